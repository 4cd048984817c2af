import { accessSync, constants, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, resolve } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { Agent, request } from 'undici';
import { openCache } from '../cache/index.ts';
import { describeRedisUrl } from '../cache/redis.ts';
import type { Config } from '../config/schema.ts';
import { createLogger } from '../log/index.ts';
import { verifySmtp } from '../mail/mailer.ts';
import { probeIssuer } from '../oauth/federation.ts';
import { GithubProvider } from '../providers/github.ts';
import { checkReplica } from '../proxy/health.ts';
import { loadUpstreamTls } from '../proxy/tls.ts';
import { OidcProvider } from '../providers/oidc.ts';
import { buildSites } from '../sites/index.ts';
import { LATEST_VERSION } from '../store/migrations.ts';
import { describeUrl } from '../store/postgres.ts';

/**
 * `gatehouse check --connect`: reaches every service the config names, from this host, as
 * `serve` would, and says for each what answered or what to fix: the store (without migrating or
 * writing anything), Redis, each app's upstream, each provider's discovery document and keys, each
 * federated service client's issuer (likewise), the SMTP server (a greeting and, with auth, a login;
 * no message), and each app's events URL (a connection; no event). Stores and caches are named as serve names them (never a password).
 * Each has `timeoutMs`; they run side by side.
 */

export interface ProbeResult {
  what: string;
  ok: boolean;
  /** What answered (ok), or what went wrong and what to do about it. */
  detail: string;
}

interface Probe {
  what: string;
  run(): Promise<string>;
  /** Said after the error when the probe fails. */
  hint: string | ((err: unknown) => string);
}

export async function probeAll(config: Config, timeoutMs = 5000): Promise<ProbeResult[]> {
  const probes: Probe[] = [storeProbe(config, timeoutMs)];
  if (config.cache.type === 'redis') {
    const url = config.cache.url;
    probes.push({
      what: `cache (redis ${describeRedisUrl(url)})`,
      hint: 'is Redis running, and reachable from this host with this URL?',
      run: async () => {
        const cache = await openCache({ type: 'redis', url, keyPrefix: 'gatehouse-check:' });
        try {
          await cache.ping();
          return 'PING answered';
        } finally {
          await cache.close();
        }
      },
    });
  }
  for (const site of buildSites(config).values())
    for (const app of site.apps) {
      const tlsKey = app.upstream.tls?.at ?? 'upstreamTls';
      for (const upstream of app.upstream.urls)
        probes.push({
          what: `app "${app.name}" upstream ${upstream.href}`,
          hint: (err) =>
            TLS_FAILURE.test(describe(err))
              ? `the TLS handshake with the app failed: does its certificate chain to ${tlsKey}.ca (or a system CA), is it valid for the upstream's host (or ${tlsKey}.serverName), and does the app take the client certificate of ${tlsKey}.cert?`
              : err instanceof UnhealthyError
                ? 'serve would take this replica out: is healthCheck.path the path of its health check (and status and body what it answers when well), and is it healthy?'
                : 'is the app running, and is this its address as seen from this host?',
          run: async () => {
            const started = performance.now();
            // As serve connects: upstreamTls's CA, client certificate and name (a file that cannot be used fails here).
            const tls = loadUpstreamTls(app.upstream.tls);
            const dispatcher = new Agent({ connect: tls.options });
            try {
              const health = app.upstream.health;
              if (health) {
                const r = await checkReplica(dispatcher, upstream, app.upstream.host, health);
                if (r.cause) throw new UnhealthyError(`healthCheck ${health.path}: ${r.cause}`);
                return `healthCheck ${health.path}: HTTP ${r.status} in ${Math.round(performance.now() - started)} ms${tls.client ? ', with the client certificate' : ''}`;
              }
              const res = await request(upstream, {
                dispatcher,
                // As serve sends it to every replica (undici takes the TLS name from it too).
                headers: { host: app.upstream.host },
                method: 'HEAD',
                headersTimeout: timeoutMs,
                bodyTimeout: timeoutMs,
                signal: AbortSignal.timeout(timeoutMs),
              });
              await res.body.dump();
              return `HTTP ${res.statusCode} in ${Math.round(performance.now() - started)} ms${tls.client ? ', with the client certificate' : ''}`;
            } finally {
              void dispatcher.destroy();
            }
          },
        });
      const events = app.events?.url;
      if (events)
        probes.push({
          what: `app "${app.name}" events ${events.href}`,
          hint: 'events are kept and retried, but is this the address the app takes them at?',
          run: () => connects(events, timeoutMs),
        });
    }
  const quiet = createLogger('silent');
  for (const p of config.providers) {
    const client = p.type === 'github' ? new GithubProvider(p, quiet) : new OidcProvider(p, quiet);
    probes.push({
      what: `provider "${p.id}" (${p.type === 'github' ? p.url : p.issuer})`,
      hint:
        p.type === 'github'
          ? 'is url (and apiUrl, for GitHub Enterprise) right and reachable from this host?'
          : "is issuer exactly the provider's issuer (its discovery document says which), and reachable from this host?",
      run: () => client.probe(),
    });
  }
  const federated = new Map<string, string[]>();
  for (const c of config.tokens.clients)
    if (c.federated) federated.set(c.federated.issuer, [...(federated.get(c.federated.issuer) ?? []), c.id]);
  for (const [issuer, clients] of federated)
    probes.push({
      what: `federated issuer ${issuer} (client ${clients.join(', ')})`,
      hint: "is federated.issuer exactly the platform's issuer (its discovery document says which), and reachable from this host?",
      run: () => probeIssuer(issuer),
    });
  if (config.email) {
    const email = config.email;
    probes.push({
      what: `email (smtp ${email.smtp.host}${email.smtp.port ? `:${email.smtp.port}` : ''})`,
      hint: 'check email.smtp: host, port, secure/requireTLS and auth',
      run: async () => {
        await verifySmtp(email, new URL(config.publicUrl).hostname);
        return email.smtp.auth ? 'greeted, and the login was accepted' : 'greeted';
      },
    });
  }
  return Promise.all(
    probes.map(async (probe) => {
      try {
        const detail = await within(probe.run(), timeoutMs);
        return { what: probe.what, ok: true, detail };
      } catch (err) {
        const hint = typeof probe.hint === 'string' ? probe.hint : probe.hint(err);
        return { what: probe.what, ok: false, detail: `${describe(err)}: ${hint}` };
      }
    }),
  );
}

/** The store, read only: SQLite's file (or where it will be made), PostgreSQL's schema version. */
function storeProbe(config: Config, timeoutMs: number): Probe {
  const s = config.store;
  if (s.type === 'sqlite') {
    const path = resolve(s.path);
    return {
      what: `store (sqlite ${path})`,
      hint: 'is store.path right, and may this user read and write it?',
      run: async () => {
        if (!existsSync(path)) {
          let dir = dirname(path);
          while (!existsSync(dir)) dir = dirname(dir);
          accessSync(dir, constants.W_OK);
          return `no database yet: serve creates it (${dir} is writable)`;
        }
        accessSync(path, constants.R_OK | constants.W_OK);
        const db = new DatabaseSync(path, { readOnly: true });
        try {
          return schemaState(migrated(db.prepare(`SELECT max(version) AS v FROM schema_migrations`).get()?.v));
        } catch (err) {
          if (/no such table/.test((err as Error).message)) return schemaState(undefined);
          throw err;
        } finally {
          db.close();
        }
      },
    };
  }
  return {
    what: `store (postgres ${describeUrl(s.url)})`,
    hint: 'is PostgreSQL running, is store.url right, and may this user connect to that database?',
    run: async () => {
      const client = new pg.Client({ connectionString: s.url, connectionTimeoutMillis: timeoutMs });
      await client.connect();
      try {
        const exists = await client.query<{ t: string | null }>(`SELECT to_regclass('schema_migrations')::text AS t`);
        if (!exists.rows[0]?.t) return schemaState(undefined);
        const { rows } = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM schema_migrations`);
        return schemaState(migrated(rows[0]?.v));
      } finally {
        await client.end();
      }
    },
  };
}

const migrated = (v: unknown): number | undefined => (v === null || v === undefined ? undefined : Number(v));

function schemaState(version: number | undefined): string {
  if (version === undefined) return 'reachable, no schema yet: serve creates it';
  if (version === LATEST_VERSION) return `schema ${version}, up to date`;
  if (version < LATEST_VERSION) return `schema ${version}: serve migrates it to ${LATEST_VERSION} at start`;
  return `schema ${version}, newer than this Gatehouse's ${LATEST_VERSION}: a newer version wrote it`;
}

/** Opens a TCP connection to the URL's host and port, and closes it. */
function connects(url: URL, timeoutMs: number): Promise<string> {
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port, timeout: timeoutMs });
    socket.once('connect', () => {
      socket.destroy();
      resolve(`accepts connections on port ${port}`);
    });
    socket.once('timeout', () => socket.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    socket.once('error', reject);
  });
}

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${ms} ms`), { code: 'ETIMEDOUT' })), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** A replica answered its healthCheck.path with an error, or not in time. */
class UnhealthyError extends Error {}

/** Errors of a TLS handshake: a certificate that does not pass, or one the peer wanted and did not get. */
const TLS_FAILURE = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_|handshake|certificate/i;

/** An error in one line: its code when it has one (ECONNREFUSED, ENOTFOUND, ...), then its message. */
function describe(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e?.code ?? e?.cause?.code;
  const message = String(e?.message ?? err).replace(/\s+/g, ' ');
  const cause = e?.cause?.message && !message.includes(e.cause.message) ? ` (${e.cause.message})` : '';
  return `${code && !message.includes(code) ? `${code}: ` : ''}${message}${cause}`.slice(0, 300);
}
