import { connect } from 'node:net';
import { requirement } from '../helpers/requirements.ts';

/**
 * Real PostgreSQL and Redis for the tests that need them. Where one is unreachable those tests
 * are skipped, loudly, and under CI=true they fail (helpers/requirements.ts).
 */

export const PG_URL = process.env.GATEHOUSE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface Service {
  name: string;
  url: string;
  host: string;
  port: number;
  available: boolean;
  /** Pass as `{ skip }` to a test or to describeOrSkip(): false when available, else the reason. */
  skip: string | false;
}

function reachable(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function probe(name: string, url: string, defaultPort: number, variable: string): Promise<Service> {
  const u = new URL(url);
  const host = u.hostname || '127.0.0.1';
  const port = Number(u.port || defaultPort);
  const available = await reachable(host, port);
  const skip = requirement(
    name,
    available ? undefined : `${name} is not reachable at ${u.protocol}//${host}:${port}`,
    `start it, or set ${variable}`,
  );
  return { name, url, host, port, available, skip };
}

export const postgres = (): Promise<Service> => probe('PostgreSQL', PG_URL, 5432, 'GATEHOUSE_TEST_PG_URL');
export const redis = (): Promise<Service> => probe('Redis', REDIS_URL, 6379, 'GATEHOUSE_TEST_REDIS_URL');

/** A URL for the same service reached through a relay on another port. */
export function viaPort(url: string, port: number, host = '127.0.0.1'): string {
  const u = new URL(url);
  u.hostname = host;
  u.port = String(port);
  return u.toString();
}

/** Polls until `check` returns truthy, or fails with `what` once the deadline passes. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for: ${what} (last: ${last instanceof Error ? last.message : String(last)})`,
      );
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * A PostgreSQL schema of this test run's own, created now, dropped by drop(). url() reaches
 * it (directly, or through a relay's port) with search_path set in the URL, so it works in
 * config files and child processes too.
 */
export async function pgSchema(
  tag: string,
): Promise<{ schema: string; url(port?: number): string; drop(): Promise<void> }> {
  const { default: pg } = await import('pg');
  const schema = `gh_test_${tag}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA "${schema}"`);
  } finally {
    await admin.end();
  }
  return {
    schema,
    url(port?: number) {
      const u = new URL(port ? viaPort(PG_URL, port) : PG_URL);
      u.searchParams.set('options', `-c search_path=${schema}`);
      return u.toString();
    },
    async drop() {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await c.end();
      }
    },
  };
}
