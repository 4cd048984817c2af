import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `gatehouse` command (`node src/cli/main.ts ...`); `input` goes to its stdin. */
export function runCli(args: string[], input?: string, env?: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/**
 * A config file for operator commands against a running test Gatehouse (its publicUrl, upstream and
 * SQLite store, at gatehouse.db in its directory), with `extra` YAML after; returns its path.
 */
export function operatorConfig(gh: { url: string; dir: string; upstream: { url: string } }, extra = ''): string {
  const file = join(gh.dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `publicUrl: ${gh.url}\nupstream: ${gh.upstream.url}\nstore: {type: sqlite, path: ${join(gh.dir, 'gatehouse.db')}}\n${extra}`,
  );
  return file;
}

/** The environment of a CLI user whose config dir is `configHome`, without a display (no browser opens). */
export function userEnv(configHome: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: configHome, ...extra };
  delete env.DISPLAY;
  delete env.WAYLAND_DISPLAY;
  return env;
}

export interface RunningCli {
  child: ChildProcess;
  stderr: () => string;
  done: Promise<CliResult>;
}

/** A long-running CLI (`gatehouse login`) whose stderr the test watches. */
export function startCli(args: string[], env: NodeJS.ProcessEnv): RunningCli {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  return {
    child,
    stderr: () => stderr,
    done: new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr }))),
  };
}

/** Waits until `gatehouse login` has printed its user code. */
export function userCode(r: RunningCli): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = /enter the code {2}([A-Z]{4}-[A-Z]{4})/.exec(r.stderr());
      if (m) {
        r.child.stderr!.off('data', check);
        resolve(m[1]!);
      }
    };
    r.child.stderr!.on('data', check);
    r.child.once('close', () => reject(new Error(`the CLI ended before printing a code: ${r.stderr()}`)));
    check();
  });
}

/**
 * Runs `use` with a gatehouse.yaml of `yaml` (newline-terminated) and a SQLite store, both in a
 * temporary directory of their own that is removed afterwards: for `gatehouse check` and the like.
 */
export async function withConfigFile<T>(yaml: string, use: (file: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-config-'));
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(file, `${yaml}store: {type: sqlite, path: ${join(dir, 'g.db')}}\n`);
  try {
    return await use(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
