import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirement } from './requirements.ts';

/**
 * Debian's Caddy, run by the tests on a loopback port with a Caddyfile they write, stopped by
 * its pid. Where Caddy is missing its tests are skipped, loudly, and under CI=true they fail
 * (helpers/requirements.ts; .ci/run installs it).
 */
export const CADDY = process.env.CADDY_PATH || '/usr/bin/caddy';

/** For `describeOrSkip(name, { skip: caddySkip() }, ...)`. */
export function caddySkip(): false | string {
  return requirement(
    'Caddy',
    existsSync(CADDY) ? undefined : `caddy not found at ${CADDY}`,
    "install Debian's caddy, or set CADDY_PATH",
  );
}

/**
 * examples/Caddyfile made runnable here: the site on https://127.0.0.1:<port> with the test's
 * certificate, bound to loopback only, HTTP/1.1 and HTTP/2 (no HTTP/3 on UDP), no admin
 * endpoint, no automatic HTTPS; Gatehouse's and the app's ports swapped in.
 */
export function caddyExample(o: {
  port: number;
  cert: string;
  key: string;
  gatehouse: number;
  app: number;
  dir: string;
}): string {
  const file = readFileSync(new URL('../../examples/Caddyfile', import.meta.url), 'utf8');
  const global = `{\n\tadmin off\n\tauto_https off\n\tstorage file_system ${o.dir}/data\n\tservers {\n\t\tprotocols h1 h2\n\t}\n}\n\n`;
  return (
    global +
    file
      .replace(
        /^app\.example\.com \{\n/m,
        `https://127.0.0.1:${o.port} {\n\tbind 127.0.0.1\n\ttls ${o.cert} ${o.key}\n`,
      )
      .replaceAll('127.0.0.1:8080', `127.0.0.1:${o.gatehouse}`)
      .replaceAll('127.0.0.1:3000', `127.0.0.1:${o.app}`)
  );
}

export interface TestCaddy {
  pid: number;
  log(): string;
  stop(): Promise<void>;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

export async function startCaddy(
  caddyfile: string,
  port: number,
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-caddy-')),
): Promise<TestCaddy> {
  const file = join(dir, 'Caddyfile');
  writeFileSync(file, caddyfile);
  const env = { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir };
  const child = spawn(CADDY, ['run', '--config', file, '--adapter', 'caddyfile'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env,
  });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!(await listening(port))) {
    if (child.exitCode !== null)
      throw new Error(`caddy did not start (exit ${child.exitCode}):\n${log}\n--- Caddyfile ---\n${caddyfile}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`caddy did not listen on ${port} within 10 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    pid: child.pid!,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        process.kill(child.pid!, 'SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
