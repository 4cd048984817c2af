// mail/ (feature): the mail Gatehouse sends: the background SMTP queue with retries (this file), the
// messages (messages.ts) and their check warnings (lint.ts).
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createTransport } from 'nodemailer';
import type { Logger } from '../log/index.ts';
import { parseMailbox, type EmailConfig } from '../config/mail.ts';

/** A rendered message (mail/messages.ts). Never logged: bodies carry links with tokens. */
export interface Message {
  to: string;
  subject: string;
  text: string;
  html: string;
  /** The display name of the sender, when the configured `from` has none (the app's title). */
  fromName?: string;
}

/** What a message is for, in log lines. */
export type MailKind =
  | 'verify_email'
  | 'password_reset'
  | 'sign_in_link'
  | 'password_changed'
  | 'email_change'
  | 'email_change_notice'
  | 'email_in_use'
  | 'invitation'
  | 'account_deleted'
  | 'new_sign_in';

/**
 * One message to send. `prepare` runs in the background, not while the request waits, and
 * may decide there is nothing to send (undefined): forgot-password queues one for every
 * address and looks up the account only there, so known and unknown addresses cost the
 * request the same. `userId` (for log lines) may be set by `prepare`.
 */
export interface MailTask {
  kind: MailKind;
  userId?: string;
  prepare(): Promise<Message | undefined>;
  /** Told once how it ended: sent, or not (nothing to send, or delivery failed for good). For the CLI. */
  settled?(sent: boolean): void;
}

/** The part of a nodemailer transport the mailer uses (a test can pass another). */
export interface MailTransport {
  sendMail(message: Record<string, unknown>): Promise<unknown>;
  close(): void;
}

interface Pending {
  task: MailTask;
  message?: Message;
  attempt: number;
}

/** Deliveries at once (and SMTP connections in the pool). */
const CONCURRENCY = 2;
/** Queued messages are started this many milliseconds later (at random, within the range). */
const START_DELAY_MS = [5, 25] as const;

/**
 * Sends Gatehouse's mail over SMTP (nodemailer's pooled transport) from a bounded in-memory
 * queue: requests only enqueue, and never wait for, or learn about, a delivery. Temporary
 * failures are retried with a doubling delay; permanent ones (5xx) and the last failure are
 * logged as `mail_failed`. A full queue drops the new message (`mail_dropped`) rather than
 * grow. Log lines name the kind and the user id, never the address, the body or a link.
 */
export class Mailer {
  private readonly config: EmailConfig;
  private readonly logger: Logger;
  private readonly transport: MailTransport;
  private readonly from: { name?: string; address: string };
  private readonly queue: Pending[] = [];
  /** Tasks being prepared or sent (at most CONCURRENCY). */
  private busy = 0;
  /** Retries waiting for their delay: counted for idle() and close(), but they hold no delivery slot. */
  private retrying = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly idleWaiters: (() => void)[] = [];
  private closed = false;
  /** The pump that starts what send() queued (send never starts work itself). */
  private pumpTimer: NodeJS.Timeout | undefined;

  constructor(config: EmailConfig, o: { logger: Logger; publicUrl: string; transport?: MailTransport }) {
    this.config = config;
    this.logger = o.logger;
    const host = new URL(o.publicUrl).hostname;
    this.from = parseMailbox(config.from ?? `no-reply@${host}`) ?? { address: `no-reply@${host}` };
    this.transport = o.transport ?? smtpTransport(config, host);
  }

  /** Queues a message. Never throws and never waits; returns false when it was dropped. */
  send(task: MailTask): boolean {
    // Retries waiting for their delay are messages held too: they count against the queue.
    // Messages a free delivery slot will take when the pump starts do not.
    const room = this.config.delivery.queueSize + Math.max(0, CONCURRENCY - this.busy);
    if (this.closed || this.queue.length + this.retrying >= room) {
      this.logger.warn(
        {
          event: 'mail_dropped',
          kind: task.kind,
          userId: task.userId,
          reason: this.closed ? 'shutting_down' : 'queue_full',
        },
        'message not queued',
      );
      return false;
    }
    this.queue.push({ task, attempt: 0 });
    // Not now, and not at a moment tied to this request: a task's prepare (a store write, a
    // link to sign) and the SMTP exchange would otherwise run ahead of the answer the request
    // is about to send (Node flushes it a tick later), or right behind it, where a client
    // timing its next request could see them: either tells a known address from an unknown
    // one (security.md #41). They start a few milliseconds later, at a random moment.
    this.pumpTimer ??= setTimeout(
      () => {
        this.pumpTimer = undefined;
        this.pump();
      },
      randomInt(START_DELAY_MS[0], START_DELAY_MS[1] + 1),
    );
    return true;
  }

  /** Messages queued, being sent or waiting for a retry (gatehouse_mail_queue_depth). */
  get depth(): number {
    return this.queue.length + this.busy + this.retrying;
  }

  /** Resolves once nothing is queued, being sent or waiting for a retry. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.busy === 0 && this.retrying === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops taking messages and retries; gives those queued and under way up to `graceMs`, then
   * closes the connections. What is left is logged as dropped.
   */
  async close(graceMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const retries = this.timers.size;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.retrying = 0;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    const left = retries + this.queue.length + this.busy;
    if (left)
      this.logger.warn(
        { event: 'mail_dropped', reason: 'shutting_down', count: left },
        `${left} message(s) not sent before shutdown`,
      );
    this.queue.length = 0;
    this.transport.close();
  }

  private pump(): void {
    while (this.busy < CONCURRENCY && this.queue.length) {
      const next = this.queue.shift()!;
      this.busy++;
      void this.deliver(next).finally(() => {
        this.busy--;
        this.pump();
      });
    }
    this.settle();
  }

  private settle(): void {
    if (this.queue.length === 0 && this.busy === 0 && this.retrying === 0)
      for (const w of this.idleWaiters.splice(0)) w();
  }

  private async deliver(p: Pending): Promise<void> {
    const { task } = p;
    if (!p.message) {
      try {
        p.message = await task.prepare();
      } catch (err) {
        this.logger.error(
          {
            event: 'mail_failed',
            kind: task.kind,
            userId: task.userId,
            stage: 'prepare',
            err: { name: (err as Error).name, message: (err as Error).message },
          },
          'message could not be prepared',
        );
        task.settled?.(false);
        return;
      }
      if (!p.message) return task.settled?.(false);
    }
    p.attempt++;
    const m = p.message;
    const started = performance.now();
    try {
      await this.transport.sendMail({
        from:
          this.from.name || m.fromName
            ? { name: (this.from.name ?? m.fromName)!, address: this.from.address }
            : this.from.address,
        ...(this.config.replyTo ? { replyTo: this.config.replyTo } : {}),
        to: m.to,
        subject: m.subject,
        text: m.text,
        html: m.html,
        // Automatic mail: no out-of-office replies, no auto-forward loops (RFC 3834).
        headers: { 'Auto-Submitted': 'auto-generated', 'X-Auto-Response-Suppress': 'All' },
        disableFileAccess: true,
        disableUrlAccess: true,
      });
      this.logger.info(
        {
          event: 'mail_sent',
          kind: task.kind,
          userId: task.userId,
          attempt: p.attempt,
          ms: Math.round(performance.now() - started),
        },
        'message sent',
      );
      task.settled?.(true);
    } catch (err) {
      const e = describe(err);
      const { attempts, retryDelay } = this.config.delivery;
      if (!e.permanent && p.attempt < attempts && !this.closed) {
        const delayMs = Math.round(retryDelay * 2 ** (p.attempt - 1) * (0.8 + Math.random() * 0.4));
        this.logger.warn(
          { event: 'mail_retry', kind: task.kind, userId: task.userId, attempt: p.attempt, delayMs, error: e },
          'sending failed; will retry',
        );
        // Counted while it waits, so idle() and close() wait for it too; the delivery slot is
        // free meanwhile (a greylisting server must not hold up everyone else's mail).
        this.retrying++;
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          this.retrying--;
          this.queue.unshift(p);
          this.pump();
        }, delayMs);
        // A retry alone does not keep the process up; close() clears what is left.
        timer.unref();
        this.timers.add(timer);
        return;
      }
      this.logger.error(
        { event: 'mail_failed', kind: task.kind, userId: task.userId, attempt: p.attempt, stage: 'send', error: e },
        'message not delivered',
      );
      task.settled?.(false);
    }
  }
}

/**
 * What a failure log line says: codes and the server's reply, never the message, and never
 * the address (servers name the recipient in their replies: "550 <a@b.example>: rejected").
 */
function describe(err: unknown): {
  code?: string;
  responseCode?: number;
  command?: string;
  permanent: boolean;
  message: string;
} {
  const e = err as { code?: string; responseCode?: number; command?: string; permanent?: boolean; message?: string };
  const permanent =
    e.permanent === true || (typeof e.responseCode === 'number' && e.responseCode >= 500 && e.responseCode < 600);
  const message = String(e.message ?? err)
    .replace(/[\r\n]+/g, ' ')
    .replace(/[^\s<>"'(),;:[\]]+@[^\s<>"'(),;:[\]]+/g, '<address>')
    .slice(0, 200);
  return { code: e.code, responseCode: e.responseCode, command: e.command, permanent, message };
}

/**
 * Connects to the SMTP server as the mailer would, and has it greet (and, with auth, log in),
 * without sending anything (`gatehouse check --connect`). Rejects with the server's or the
 * network's error.
 */
export async function verifySmtp(config: EmailConfig, host: string): Promise<void> {
  const transport = smtpTransport(config, host) as MailTransport & { verify(): Promise<true> };
  try {
    await transport.verify();
  } finally {
    transport.close();
  }
}

function smtpTransport(config: EmailConfig, host: string): MailTransport {
  const s = config.smtp;
  const t = s.timeouts;
  return createTransport({
    pool: true,
    maxConnections: CONCURRENCY,
    idleTimeout: 30_000,
    host: s.host,
    port: s.port ?? (s.secure ? 465 : 587),
    secure: s.secure,
    requireTLS: s.requireTLS,
    ...(s.auth ? { auth: { user: s.auth.user, pass: s.auth.pass } } : {}),
    name: s.name ?? host,
    connectionTimeout: t.connect,
    greetingTimeout: t.greeting,
    socketTimeout: t.socket,
    dnsTimeout: t.connect,
    tls: {
      minVersion: 'TLSv1.2',
      ...(s.tls?.ca ? { ca: readCa(s.tls.ca) } : {}),
      ...(s.tls?.servername ? { servername: s.tls.servername } : {}),
    },
    logger: false,
    disableFileAccess: true,
    disableUrlAccess: true,
  }) as unknown as MailTransport;
}

function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(
      `email.smtp.tls.ca: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}
