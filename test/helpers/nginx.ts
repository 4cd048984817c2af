import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirement } from './requirements.ts';

/**
 * Debian's nginx, started by the tests on loopback ports with a config they write, stopped
 * by its pid. Where nginx is missing the tests that need it are skipped, loudly, and under
 * CI=true they fail (helpers/requirements.ts; .ci/run installs it).
 */
export const NGINX = process.env.NGINX_PATH || '/usr/sbin/nginx';

/** For `describeOrSkip(name, { skip: nginxSkip() }, ...)`. */
export function nginxSkip(): false | string {
  return requirement(
    'nginx',
    existsSync(NGINX) ? undefined : `nginx not found at ${NGINX}`,
    "install Debian's nginx, or set NGINX_PATH",
  );
}

export interface TestNginx {
  pid: number;
  dir: string;
  /** nginx's error log so far (for failure messages). */
  errors(): string;
  stop(): Promise<void>;
}

function listening(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Runs nginx in the foreground (no daemon, no worker processes) with `conf` as its whole
 * nginx.conf, temp files and logs in a directory of its own. Resolves once every port in
 * `ports` accepts connections; rejects with nginx's own message when it does not start.
 */
export async function startNginx(conf: string, ports: number[], host = '127.0.0.1'): Promise<TestNginx> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-nginx-'));
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
  const file = join(dir, 'nginx.conf');
  const errorLog = join(dir, 'error.log');
  writeFileSync(file, conf);
  writeFileSync(errorLog, '');
  const child: ChildProcess = spawn(
    NGINX,
    ['-p', dir, '-c', file, '-e', errorLog, '-g', `daemon off; master_process off; pid ${join(dir, 'nginx.pid')};`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const errors = () => `${stderr}${existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : ''}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`nginx did not start (exit ${child.exitCode}):\n${errors()}\n--- config ---\n${conf}`);
    if ((await Promise.all(ports.map((p) => listening(p, host)))).every(Boolean)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nginx did not listen on ${ports.join(', ')} within 10 s:\n${errors()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    pid: child.pid!,
    dir,
    errors,
    async stop() {
      if (child.exitCode === null) {
        process.kill(child.pid!, 'SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Temp paths of nginx's own, inserted at the top of the http block. */
export function withTempPaths(conf: string, dir = '.'): string {
  return conf.replace(
    /^http \{\n/m,
    `http {\n  access_log off;\n  client_body_temp_path ${dir}/body;\n  proxy_temp_path ${dir}/proxy;\n  fastcgi_temp_path ${dir}/fastcgi;\n  uwsgi_temp_path ${dir}/uwsgi;\n  scgi_temp_path ${dir}/scgi;\n`,
  );
}

/**
 * One of examples/*.conf made runnable here: loopback ports instead of 80/443, the test's
 * certificate, Gatehouse's and the app's ports, nginx connecting from `bindAddress` (so it
 * can be told apart from the test client, which connects from 127.0.0.1).
 */
export function example(
  name: string,
  o: {
    https: number;
    http: number;
    cert: string;
    key: string;
    gatehouse: number;
    app?: number;
    bindAddress?: string;
    edit?: (conf: string) => string;
  },
): string {
  let conf = readFileSync(new URL(`../../examples/${name}`, import.meta.url), 'utf8');
  conf = conf
    .replace(/^user .*\n/m, '')
    .replace(/^\s*listen \[::\]:\d+.*\n/gm, '')
    .replace(/listen 443 ssl http2;/g, `listen 127.0.0.1:${o.https} ssl http2;`)
    .replace(/listen 80;/g, `listen 127.0.0.1:${o.http};`)
    .replace(/ssl_certificate +\S+;/, `ssl_certificate ${o.cert};`)
    .replace(/ssl_certificate_key +\S+;/, `ssl_certificate_key ${o.key};`)
    .replace(/server 127\.0\.0\.1:8080;/, `server 127.0.0.1:${o.gatehouse};`);
  if (o.app) conf = conf.replace(/server 127\.0\.0\.1:3000;/, `server 127.0.0.1:${o.app};`);
  if (o.bindAddress) conf = conf.replace(/^http \{\n/m, `http {\n  proxy_bind ${o.bindAddress};\n`);
  conf = withTempPaths(conf);
  return o.edit ? o.edit(conf) : conf;
}
