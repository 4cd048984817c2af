import type { Duplex } from 'node:stream';
import type { Logger } from '../log/index.ts';
import { closeFrame, type OpenTunnel } from '../proxy/upgrade.ts';

/**
 * Why the user of an open tunnel may no longer use it (its session ended, its login revoked, the
 * route's rule no longer admits them), or null while it stands. Rejects when that cannot be told
 * now (the store unreachable): the tunnel stays, and is asked again at the next round.
 */
export type TunnelCheck = () => Promise<string | null>;

interface Tunnel {
  tunnel: OpenTunnel;
  /** Who opened it (undefined: nobody signed in), for the line that says it was closed; its check. */
  watch?: { check: TunnelCheck; user: string | undefined; app: string };
}

/** WebSocket close codes (RFC 6455 §7.4.1). */
const GOING_AWAY = 1001;
const POLICY_VIOLATION = 1008;

/**
 * The node's open WebSocket tunnels (client socket → app socket). Shutdown closes them all
 * (`closeAll`); and every `sessions.webSocketRecheck` (and after a reload) each tunnel is checked
 * again as its handshake would be decided now (pipeline/upgrade.ts makes the check), so that
 * signing out, a revoked session or CLI login, a disabled or deleted user, a rule that no longer
 * admits them or an app closed for maintenance ends the tunnels, on every node and worker, within
 * one interval: a tunnel is not a request, and nothing else would ever ask about it again.
 */
export class Tunnels {
  private readonly open = new Map<Duplex, Tunnel>();
  private readonly logger: Logger;
  private readonly everyMs: () => number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  /** `everyMs`: read before each round, so a reload's sessions.webSocketRecheck applies from the next. */
  constructor(logger: Logger, everyMs: () => number) {
    this.logger = logger;
    this.everyMs = everyMs;
  }

  get size(): number {
    return this.open.size;
  }

  /** A tunnel just opened; it leaves the table when the client's socket closes. */
  add(tunnel: OpenTunnel, watch?: Tunnel['watch']): void {
    const client = tunnel.client;
    this.open.set(client, { tunnel, watch });
    client.once('close', () => this.open.delete(client));
    if (watch && this.timer === undefined) this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.recheck().finally(() => {
        this.timer = undefined;
        for (const t of this.open.values()) if (t.watch) return this.schedule();
      });
    }, this.everyMs()).unref();
  }

  /** One round: every tunnel checked at once, those no longer admitted closed. */
  async recheck(): Promise<void> {
    let failed: Error | undefined;
    await Promise.all(
      Array.from(this.open, async ([client, t]) => {
        if (!t.watch) return;
        const why = await t.watch.check().catch((err: Error) => void (failed ??= err));
        if (!why || !this.open.has(client)) return;
        this.logger.info(
          { event: 'websocket_closed', reason: why, user: t.watch.user, app: t.watch.app },
          `an open WebSocket was closed: ${why}`,
        );
        this.end(t.tunnel, closeFrame(POLICY_VIOLATION, why));
      }),
    );
    if (failed)
      this.logger.warn(
        { event: 'websocket_recheck', outcome: 'unavailable', err: { message: failed.message } },
        'open WebSockets could not be checked again now; they stay open until the next round',
      );
  }

  /** Shutdown: every tunnel told the server is going away, its app side closed. */
  closeAll(): void {
    const frame = closeFrame(GOING_AWAY);
    for (const t of this.open.values()) this.end(t.tunnel, frame);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private end(tunnel: OpenTunnel, frame: Buffer): void {
    this.open.delete(tunnel.client);
    tunnel.close(frame);
  }
}
