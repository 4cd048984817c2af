import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { PG_URL } from '../faults/services.ts';
import { requirement } from '../helpers/requirements.ts';

/**
 * A real Backstage backend for the tests, installed from npm with pinned versions into a cache
 * directory outside the checkout (never part of the root `npm ci`), reused by every later run:
 *   $GATEHOUSE_TEST_CACHE, else $XDG_CACHE_HOME/gatehouse-test, else ~/.cache/gatehouse-test,
 *   each install in backstage-<hash of the package list and Node's major version>.
 * No native addon is built: Backstage's database is the machine's PostgreSQL (a database of its
 * own per run), not better-sqlite3 (an optional peer that npm leaves out).
 */

/** What the tests install, pinned. The module's devDependencies pin the same versions (checked in provider.test.ts). */
export const BACKSTAGE_PACKAGES: Record<string, string> = {
  '@backstage/backend-defaults': '0.19.0',
  '@backstage/backend-plugin-api': '1.12.0',
  '@backstage/errors': '1.4.0',
  '@backstage/plugin-auth-backend': '0.31.0',
  // The stock oauth2Proxy provider, signed in through Gatehouse's oauth2-proxy header preset.
  '@backstage/plugin-auth-backend-module-oauth2-proxy-provider': '0.3.3',
  '@backstage/plugin-auth-node': '0.7.8',
  '@backstage/plugin-catalog-backend': '4.0.5',
};

function cacheRoot(): string {
  if (process.env.GATEHOUSE_TEST_CACHE) return process.env.GATEHOUSE_TEST_CACHE;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'gatehouse-test');
}

function run(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${out.slice(-4000)}`));
    });
  });
}

export interface BackstageInstall {
  /** The install's node_modules. */
  modules: string;
  /** Set when this run installed it: how long it took. */
  installedInMs?: number;
}

/**
 * The cached install, or a new one: `npm install` into a directory of its own (no install
 * scripts, no optional peers), renamed into place only once complete, so an interrupted
 * install is never taken for a cached one; older installs are removed.
 */
export async function installBackstage(): Promise<BackstageInstall> {
  const manifest = `${JSON.stringify({ name: 'gatehouse-backstage-test', private: true, dependencies: BACKSTAGE_PACKAGES }, null, 2)}\n`;
  const hash = createHash('sha256')
    .update(`${process.versions.node.split('.')[0]}\n${manifest}`)
    .digest('hex')
    .slice(0, 16);
  const root = cacheRoot();
  const dir = join(root, `backstage-${hash}`);
  const modules = join(dir, 'node_modules');
  if (existsSync(modules)) return { modules };
  mkdirSync(root, { recursive: true });
  const partial = mkdtempSync(join(root, `.partial-backstage-${hash}-`));
  const started = Date.now();
  try {
    writeFileSync(join(partial, 'package.json'), manifest);
    await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error', '--prefer-offline'],
      partial,
      9 * 60_000,
    );
    try {
      renameSync(partial, dir);
    } catch (err) {
      if (!existsSync(modules)) throw err; // else another run finished first: use that one
      rmSync(partial, { recursive: true, force: true });
    }
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    throw err;
  }
  for (const old of readdirSync(root))
    if (old.startsWith('backstage-') && old !== `backstage-${hash}`)
      rmSync(join(root, old), { recursive: true, force: true });
  return { modules, installedInMs: Date.now() - started };
}

/**
 * The install, or why there is none, as `skip` for describeOrSkip(): a missing install is
 * reported like any missing service (test/helpers/requirements.ts): skipped tests with the
 * reason and a banner, a failure under CI=true.
 */
export async function backstageOrSkip(): Promise<{ install?: BackstageInstall; skip: string | false }> {
  try {
    const install = await installBackstage();
    if (install.installedInMs !== undefined)
      process.stderr.write(
        `backstage: installed ${Object.keys(BACKSTAGE_PACKAGES).length} pinned packages into ${install.modules} in ${(install.installedInMs / 1000).toFixed(1)} s (later runs reuse it)\n`,
      );
    return { install, skip: false };
  } catch (err) {
    const problem = `Backstage could not be installed from npm: ${(err as Error).message.split('\n')[0]}`;
    return {
      skip: requirement('Backstage', problem, 'the npm registry must be reachable; see docs/backstage.md#tests'),
    };
  }
}

/** A PostgreSQL database of its own for one Backstage run (Backstage puts each plugin in a schema of it). */
export async function createDatabase(): Promise<{ name: string; drop(): Promise<void> }> {
  const name = `gatehouse_backstage_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  return {
    name,
    async drop() {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

export interface TestBackstage {
  url: string;
  port: number;
  /** Everything the backend printed (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts test/backstage/backend.ts with `config` as its whole app-config (written as JSON, which
 * is YAML), in a directory of its own; resolves once /.backstage/health/v1/readiness answers 200,
 * rejects with the backend's output when it exits or is not ready within the deadline.
 */
export async function startBackstage(
  install: BackstageInstall,
  port: number,
  config: Record<string, unknown>,
  env: Record<string, string> = {},
): Promise<TestBackstage> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-backstage-'));
  // Backstage looks for the backend's package.json upwards from its working directory.
  writeFileSync(join(dir, 'package.json'), '{"name":"gatehouse-test-backend","private":true}\n');
  writeFileSync(join(dir, 'app-config.yaml'), JSON.stringify(config, null, 2));
  const entry = new URL('./backend.ts', import.meta.url).pathname;
  const child: ChildProcess = spawn(process.execPath, [entry, '--config', join(dir, 'app-config.yaml')], {
    cwd: dir,
    env: { ...process.env, NODE_ENV: 'production', BACKSTAGE_MODULES: install.modules, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`the Backstage backend exited before it was ready:\n${output.slice(-6000)}`);
    }
    const ready = await fetch(`${url}/.backstage/health/v1/readiness`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the Backstage backend was not ready within 90 s:\n${output.slice(-6000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, port, output: () => output, stop };
}
