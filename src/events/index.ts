// events/ (feature): telling apps what happened to an account (deleted, disabled, enabled, a new address), so
// an app can erase, lock or update what it keeps under the user id. Each event is written to the store's outbox
// in the transaction of the change that causes it (in the server or the CLI), then POSTed to every app that asked
// for it as a Security Event Token, signed with the key ring (verifiable with the JWKS, like the assertion), and
// retried until the app takes it. docs/events.md.
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'undici';
import type { AppEventType, Config } from '../config/schema.ts';
import type { KeyRing } from '../keys/keys.ts';
import type { Logger } from '../log/index.ts';
import type { Metrics } from '../metrics/index.ts';
import { loadUpstreamTls } from '../proxy/tls.ts';
import { type App, buildSites, type Site, type UpstreamTarget } from '../sites/index.ts';
import type { AppEventRecord, OutboxWrite, Store } from '../store/index.ts';
import { EVENT_TYP, EVENT_URIS } from '../verify/index.ts';

/**
 * The events an app is told of: the types its `events:` names, but email_changed only when it
 * gets addresses (headers.email): the new address goes only where addresses go already.
 */
export function eventTypesOf(app: Pick<App, 'events' | 'headers'>): AppEventType[] {
  if (!app.events) return [];
  return [...app.events.types].filter((t) => t !== 'email_changed' || app.headers.email !== null);
}

/** How a SET is POSTed (RFC 8935). Its JWS `typ` is EVENT_TYP, secevent+jwt (RFC 8417 §2.3), which gatehouse/verify checks. */
const SET_CONTENT_TYPE = 'application/secevent+jwt';

/** An event: what happened to which user; `value`, what it carries besides (email_changed: the new address). */
export interface AppEvent {
  type: AppEventType;
  userId: string;
  value?: string;
}

/** What the features that make events take (accounts/). */
export interface AppEventSink {
  /**
   * Makes the change that causes `event`: `change` gets the event's outbox rows, for the store to
   * write in the change's own transaction (so both are made or neither is); once it is done, the
   * apps are told off the caller's path.
   */
  record<T>(event: AppEvent, change: (outbox: OutboxWrite) => Promise<T>): Promise<T>;
}

/** No app is told anything (parts made without the server, unit tests). */
export const NO_EVENTS: AppEventSink = { record: (_event, change) => change({ events: [] }) };

/** How long a claimed event is this node's: past it, another node (or this one) tries again. */
const LEASE_MS = 60_000;
/** Events claimed and sent at once. */
const BATCH = 20;
/** The first retry waits this long, each next one twice as long, up to MAX_RETRY_MS. */
const FIRST_RETRY_MS = 30_000;
const MAX_RETRY_MS = 3_600_000;
/** An event the app has not taken this long after it happened is dropped (logged as an error). */
export const GIVE_UP_MS = 3 * 86_400_000;
/** A SET's lifetime (at most tokens.maxLifetime): a copy caught on the way cannot be replayed to the app later. */
const SET_TTL_MS = 5 * 60_000;
/** What is read of an app's answer (its error JSON, RFC 8935 §2.3). */
const ANSWER_BYTES = 4096;

/** The wait before attempt `attempts + 1`: 30 s, 1 min, 2 min, ... 1 h, each ±10 %. */
export function retryDelay(attempts: number): number {
  const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, Math.min(attempts - 1, 20)));
  return Math.round(base * (0.9 + Math.random() * 0.2));
}

export interface DeliveryCounts {
  delivered: number;
  /** Failed and due again later. */
  retried: number;
  /** Refused by the app (400), given up, or for an app that no longer takes events. */
  dropped: number;
}

export interface AppEventsOptions {
  store: Pick<Store, 'appEvents'>;
  /** Signs each attempt (a fresh `iat` and `exp`; the `jti` stays). */
  ring: Pick<KeyRing, 'sign'>;
  /**
   * Every app; those with `events` are told of the types they chose, email_changed only when they
   * get addresses (headers.email). An events URL on the upstream's origin is reached with the
   * app's upstreamTls (its CA, client certificate and name).
   */
  apps: Iterable<Pick<App, 'name' | 'events' | 'headers'> & { upstream?: UpstreamTarget }>;
  logger: Logger;
  /** gatehouse_app_events_total{app, outcome}, when metrics are on. */
  metrics?: Pick<Metrics, 'appEvents'>;
  now?: () => number;
  /** Each POST's limit for the app's answer (headers, then body); default 10 s. */
  timeoutMs?: number;
  /** Each SET's lifetime; default SET_TTL_MS (the ring refuses one longer than tokens.maxLifetime). */
  ttlMs?: number;
  /** Send an event as soon as it is recorded (default); false: only when deliverDue() is called (the CLI). */
  sendAtOnce?: boolean;
}

/**
 * The outbox and its courier. `record` has the change write one row per app that asked for the
 * event type (so an event survives a restart, and the CLI's reach the server's courier);
 * `deliverDue` claims what is due (one node per event: store/app-event-types.ts) and POSTs each
 * as a SET: 2xx: taken; 400: refused (RFC 8935), dropped; anything else: retried with backoff for
 * up to three days. At least once: an app drops a second copy by its `jti`.
 */
export class AppEvents implements AppEventSink {
  private readonly o: AppEventsOptions;
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private readonly urls = new Map<string, { url: URL; tls: UpstreamTarget['tls'] }>();
  private readonly subscribers = new Map<AppEventType, string[]>();
  /** The last run asked for (settles when every run before it has too). */
  private last: Promise<unknown> = Promise.resolve();
  /** A run asked for that has not started yet: later calls without a time join it. */
  private waiting: Promise<DeliveryCounts> | null = null;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: AppEventsOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    for (const app of options.apps) {
      if (!app.events) continue;
      const url = app.events.url;
      this.urls.set(app.name, {
        url,
        tls: app.upstream?.urls.some((u) => u.origin === url.origin) ? app.upstream.tls : null,
      });
      for (const type of eventTypesOf(app)) {
        const list = this.subscribers.get(type) ?? [];
        list.push(app.name);
        this.subscribers.set(type, list);
      }
    }
  }

  /**
   * The outbox and courier of `config`'s apps (every site's), each SET living no longer than
   * tokens.maxLifetime. `sites`: the config's, when the caller has built them already.
   */
  static forConfig(
    config: Config,
    options: Omit<AppEventsOptions, 'apps' | 'ttlMs'>,
    sites: Map<string, Site> = buildSites(config),
  ): AppEvents {
    return new AppEvents({
      ...options,
      apps: [...sites.values()].flatMap((s) => s.apps),
      ttlMs: Math.min(SET_TTL_MS, config.tokens.maxLifetime),
    });
  }

  /** Whether any app takes events. */
  get enabled(): boolean {
    return this.urls.size > 0;
  }

  async record<T>(event: AppEvent, change: (outbox: OutboxWrite) => Promise<T>): Promise<T> {
    const outbox = this.outbox(event);
    const result = await change(outbox);
    if (outbox.events.length > 0 && this.o.sendAtOnce !== false) this.kick();
    return result;
  }

  /** The event's outbox rows: one per app that takes its type (none when no app does). */
  private outbox({ type, userId, value }: AppEvent): OutboxWrite {
    const at = this.now();
    const events = (this.subscribers.get(type) ?? []).map((app) => ({
      id: randomUUID(),
      app,
      type,
      userId,
      at,
      attempts: 0,
      nextAt: at,
      lastError: null,
      value: value ?? null,
    }));
    // A deleted account's waiting address changes are not sent after all: the address goes with it.
    if (type === 'account_deleted' && this.subscribers.has('email_changed'))
      return { events, discard: ['email_changed'] };
    return { events };
  }

  /** Delivers what is due, off the caller's path. */
  kick(): void {
    if (!this.closed && this.enabled) void this.deliverDue();
  }

  /**
   * Sends every event due at `now` (default: the clock's now; tests pass a later time to see
   * retries) in a run that starts after this call, once the run under way (if any) is over, and
   * resolves with what that run did. Runs never overlap; calls made while one waits to start
   * join it (with the clock's now).
   */
  deliverDue(now?: number): Promise<DeliveryCounts> {
    if (this.waiting && now === undefined) return this.waiting;
    const run: Promise<DeliveryCounts> = this.last.then(() => {
      if (this.waiting === run) this.waiting = null;
      return this.run(now);
    });
    this.last = run.catch(() => {});
    if (now === undefined) this.waiting = run;
    return run;
  }

  /** Looks for due events (the CLI's, a retry's, another node's lapsed claim) every `pollMs`. */
  start(pollMs = 10_000): void {
    if (!this.enabled || this.timer) return;
    this.timer = setInterval(() => this.kick(), pollMs);
    this.timer.unref();
    this.kick();
  }

  /** Stops polling and waits for the attempts under way. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.last;
  }

  private async run(at: number | undefined): Promise<DeliveryCounts> {
    const counts: DeliveryCounts = { delivered: 0, retried: 0, dropped: 0 };
    for (;;) {
      const now = at ?? this.now();
      let batch: AppEventRecord[];
      try {
        batch = await this.o.store.appEvents.claim(now, now + LEASE_MS, BATCH);
      } catch (err) {
        this.o.logger.warn({ event: 'app_events_unavailable', err }, 'could not read the events for apps; will retry');
        break;
      }
      if (batch.length === 0) break;
      await Promise.all(batch.map((e) => this.deliver(e, now, counts)));
    }
    return counts;
  }

  private async deliver(e: AppEventRecord, now: number, counts: DeliveryCounts): Promise<void> {
    const about = { app: e.app, type: e.type, id: e.id, userId: e.userId, attempts: e.attempts };
    const target = this.urls.get(e.app);
    const uri = EVENT_URIS[e.type as AppEventType];
    // The config may have changed since it was recorded: the app, or this type for it, gone.
    const takes = this.subscribers.get(e.type as AppEventType)?.includes(e.app) ?? false;
    try {
      if (!target || !uri || !takes) {
        await this.o.store.appEvents.done(e.id);
        counts.dropped++;
        this.o.metrics?.appEvents.inc({ app: e.app, outcome: 'dropped' });
        this.o.logger.warn(
          { event: 'app_event_dropped', ...about, cause: 'the app no longer takes this event' },
          'dropped an event the config no longer sends',
        );
        return;
      }
      const failure = await this.post(target, e, uri);
      if (failure === null) {
        await this.o.store.appEvents.done(e.id);
        counts.delivered++;
        this.o.metrics?.appEvents.inc({ app: e.app, outcome: 'delivered' });
        this.o.logger.info({ event: 'app_event_delivered', ...about }, 'told the app of an event');
        return;
      }
      if (failure.refused) {
        await this.o.store.appEvents.done(e.id);
        counts.dropped++;
        this.o.metrics?.appEvents.inc({ app: e.app, outcome: 'rejected' });
        this.o.logger.error(
          { event: 'app_event_rejected', ...about, status: 400, err: failure.err, description: failure.description },
          'the app refused an event (400): it is not sent again',
        );
        return;
      }
      if (now - e.at >= GIVE_UP_MS) {
        await this.o.store.appEvents.done(e.id);
        counts.dropped++;
        this.o.metrics?.appEvents.inc({ app: e.app, outcome: 'dropped' });
        this.o.logger.error(
          { event: 'app_event_dropped', ...about, cause: failure.cause },
          'gave up telling the app of an event (three days of failures)',
        );
        return;
      }
      const retryAt = now + retryDelay(e.attempts);
      await this.o.store.appEvents.retry(e.id, retryAt, failure.cause);
      counts.retried++;
      this.o.metrics?.appEvents.inc({ app: e.app, outcome: 'failed' });
      this.o.logger.warn(
        { event: 'app_event_failed', ...about, cause: failure.cause, retryAt: new Date(retryAt).toISOString() },
        'could not tell the app of an event; will retry',
      );
    } catch (err) {
      // The store failed: the claim lapses and the event is tried again after the lease.
      counts.retried++;
      this.o.logger.warn({ event: 'app_events_unavailable', ...about, err }, 'could not update an event for apps');
    }
  }

  /** POSTs the event's SET; null when the app took it (2xx). */
  private async post(
    { url, tls }: { url: URL; tls: UpstreamTarget['tls'] },
    e: AppEventRecord,
    uri: string,
  ): Promise<{ refused: true; err?: string; description?: string } | { refused: false; cause: string } | null> {
    let token: string;
    try {
      token = await this.o.ring.sign(
        {
          jti: e.id,
          sub_id: { format: 'opaque', id: e.userId },
          events: {
            [uri]: {
              event_timestamp: Math.floor(e.at / 1000),
              ...(e.value === null ? {} : { 'new-value': e.value }),
            },
          },
        },
        { typ: EVENT_TYP, ttlMs: this.o.ttlMs ?? SET_TTL_MS, audience: e.app, subject: e.userId },
      );
    } catch (err) {
      return { refused: false, cause: `signing: ${(err as Error).message}` };
    }
    // upstreamTls's files are read for each delivery (rare, and so a renewed certificate is used at once).
    let dispatcher: Agent | undefined;
    try {
      if (tls) dispatcher = new Agent({ connect: loadUpstreamTls(tls).options });
    } catch (err) {
      return { refused: false, cause: (err as Error).message };
    }
    try {
      const res = await request(url, {
        dispatcher,
        method: 'POST',
        headers: { 'content-type': SET_CONTENT_TYPE, accept: 'application/json' },
        body: token,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const answer = await readSome(res.body, ANSWER_BYTES);
      if (res.statusCode >= 200 && res.statusCode < 300) return null;
      if (res.statusCode === 400) return { refused: true, ...errorOf(answer) };
      return { refused: false, cause: `HTTP ${res.statusCode}` };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).name;
      return { refused: false, cause: code };
    } finally {
      void dispatcher?.destroy();
    }
  }
}

/** Up to `limit` bytes of a body as text; the rest is not read (the connection is closed). */
async function readSome(body: AsyncIterable<Buffer> & { destroy(): void }, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= limit) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8');
}

/** RFC 8935 §2.3's error answer: `err` (a code) and `description`, kept short for the log. */
function errorOf(answer: string): { err?: string; description?: string } {
  try {
    const j = JSON.parse(answer) as { err?: unknown; description?: unknown };
    return {
      err: typeof j.err === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(j.err) ? j.err : undefined,
      description: typeof j.description === 'string' ? j.description.slice(0, 200) : undefined,
    };
  } catch {
    return {};
  }
}
