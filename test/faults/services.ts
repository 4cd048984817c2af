import { connect } from 'node:net';
import { test } from 'node:test';

/**
 * Real PostgreSQL and Redis for the tests that need them. Where one is unreachable the tests
 * that need it are skipped with a loud message, except under CI (CI=true), where a missing
 * service is a failure: CI must never go green by skipping.
 */

export const PG_URL = process.env.GATEHOUSE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface Service {
  name: string;
  url: string;
  host: string;
  port: number;
  available: boolean;
  /** Pass as `{ skip }` to describe(): false when available, else the loud reason. */
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

async function probe(name: string, url: string, defaultPort: number): Promise<Service> {
  const u = new URL(url);
  const host = u.hostname || '127.0.0.1';
  const port = Number(u.port || defaultPort);
  const available = await reachable(host, port);
  const shown = `${u.protocol}//${host}:${port}`;
  const service: Service = { name, url, host, port, available, skip: false };
  if (available) return service;
  const message = `${name} is not reachable at ${shown}; the tests that need it cannot run`;
  if (process.env.CI === 'true') {
    // Registered as a top-level test so the file fails, loudly, with the reason.
    test(`${name} is reachable (required under CI)`, () => {
      throw new Error(`${message}. Under CI=true this is a failure, not a skip: start ${name} (see .ci/run).`);
    });
    service.skip = `${message} (failing: CI=true)`;
  } else {
    process.stderr.write(
      `\n${'!'.repeat(78)}\n!! SKIPPING: ${message}.\n!! Start it, or set ${name === 'PostgreSQL' ? 'GATEHOUSE_TEST_PG_URL' : 'GATEHOUSE_TEST_REDIS_URL'}. Under CI=true this fails instead.\n${'!'.repeat(78)}\n\n`,
    );
    service.skip = `SKIPPED: ${message}`;
  }
  return service;
}

export const postgres = (): Promise<Service> => probe('PostgreSQL', PG_URL, 5432);
export const redis = (): Promise<Service> => probe('Redis', REDIS_URL, 6379);

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
