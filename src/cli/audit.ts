import { userInfo } from 'node:os';
import { uuid7 } from '../audit/uuid7.ts';
import { parseDuration } from '../config/duration.ts';
import { normalizeEmail } from '../config/email.ts';
import type { AuditEvent } from '../store/index.ts';
import type { OperatorContext } from './context.ts';
import { out, table, time, UsageError } from './io.ts';

/**
 * Control characters (a user agent, an email the client typed) would let a record rewrite the
 * terminal or forge a line of this table: shown as \xNN instead (security.md #190).
 */
const printable = (v: unknown): string =>
  String(v ?? '').replace(
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );

/** "operator:<OS user>": who ran a command on this machine. */
export function operatorName(): string {
  let name = 'unknown';
  try {
    name = userInfo().username;
  } catch {
    name = process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
  return `operator:${name}`;
}

const namedUser = (command: string, args: string[], flags: { user?: string }) =>
  command === 'sessions' ? flags.user : command === 'users' ? args[1] : undefined;

/** The id of the user an operator command names (by email or id), if there is one. */
export async function auditedUser(
  ctx: Pick<OperatorContext, 'store'>,
  command: string,
  args: string[],
  flags: { user?: string },
): Promise<string | null> {
  const who = namedUser(command, args, flags);
  if (!who) return null;
  const email = normalizeEmail(who);
  return (email ? await ctx.store.users.getByEmail(email) : await ctx.store.users.get(who))?.id ?? null;
}

/**
 * Records an operator command (users, sessions, keys) in the audit trail, written at once (the
 * CLI has no queue to flush). The user it was about, when one is named. Never a password: those
 * come from stdin, not the arguments. `userId`: auditedUser's answer before the command ran
 * (after `users delete` there is nobody to look up); looked up now when it was none (after
 * `users add` there is).
 */
export async function auditCommand(
  ctx: Pick<OperatorContext, 'store'>,
  command: string,
  args: string[],
  flags: { user?: string; now?: boolean; algorithm?: string; groups?: string; name?: string; all?: boolean },
  outcome: 'success' | 'failure',
  userId: string | null = null,
): Promise<void> {
  const sub = args[0] ?? '';
  if (sub === 'list') return;
  const who = namedUser(command, args, flags);
  userId ??= await auditedUser(ctx, command, args, flags);
  await ctx.store.audit.append([
    operatorEvent('operator', userId, outcome, {
      command: `${command} ${sub}`.trim(),
      ...(who ? { target: who.slice(0, 256) } : {}),
      ...(args.length > 2 ? { args: args.slice(2).join(' ').slice(0, 256) } : {}),
      ...(command === 'sessions' && args[1] ? { id: args[1].slice(0, 64) } : {}),
      ...(command === 'clients' && args[1] ? { client: args[1].slice(0, 256) } : {}),
      ...(flags.now ? { now: true } : {}),
      ...(flags.all ? { all: true } : {}),
      ...(flags.algorithm ? { algorithm: flags.algorithm.slice(0, 16) } : {}),
      ...(flags.groups ? { groups: flags.groups.slice(0, 256) } : {}),
    }),
  ]);
}

/** An audit event an operator's command makes: no address or browser, the OS user as actor. */
export function operatorEvent(
  event: AuditEvent['event'],
  userId: string | null,
  outcome: 'success' | 'failure',
  detail: AuditEvent['detail'] = {},
): AuditEvent {
  return { ...uuid7(), event, userId, outcome, ip: null, userAgent: null, actor: operatorName(), detail };
}

/** `gatehouse audit [--user X] [--since 24h] [--event login] [--json] [--limit N]` */
export async function audit(
  ctx: OperatorContext,
  flags: { user?: string; since?: string; event?: string; json?: boolean; limit?: string },
): Promise<number> {
  let userId: string | undefined;
  if (flags.user) {
    const email = normalizeEmail(flags.user);
    userId = (email ? await ctx.store.users.getByEmail(email) : await ctx.store.users.get(flags.user))?.id;
    // A deleted user's events stay: an id is taken as it is.
    userId ??= email ? undefined : flags.user;
    if (!userId) throw new UsageError(`no user ${flags.user} (a deleted user is named by id)`);
  }
  let since: number | undefined;
  if (flags.since !== undefined) {
    const ms = parseDuration(flags.since);
    if (ms === undefined) throw new UsageError(`--since expects a duration such as 24h or 7d, found "${flags.since}"`);
    since = Date.now() - ms;
  }
  const limit = flags.limit === undefined ? 1000 : Number(flags.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
    throw new UsageError('--limit expects a number from 1 to 10000');
  const events = await ctx.store.audit.list({ userId, since, event: flags.event, limit });
  if (flags.json) {
    // JSON lines, oldest first: one event per line, ready for jq or a log shipper.
    for (const e of events.reverse()) out(JSON.stringify(e));
    return 0;
  }
  if (events.length === 0) {
    out('no audit events');
    return 0;
  }
  const emails = new Map<string, string>();
  for (const id of new Set(events.map((e) => e.userId).filter((x): x is string => x !== null)))
    emails.set(id, (await ctx.store.users.get(id))?.email ?? id);
  out(
    table(
      events.reverse().map((e) => ({
        time: time(e.at),
        event: e.event,
        outcome: printable(e.outcome),
        user: printable(e.userId ? emails.get(e.userId) : ''),
        by: printable(e.actor ?? ''),
        ip: printable(e.ip ?? ''),
        detail: printable(
          Object.entries(e.detail)
            .map(([k, v]) => `${k}=${v}`)
            .join(' '),
        ).slice(0, 120),
        agent: printable(e.userAgent ?? '').slice(0, 40),
      })),
      ['time', 'event', 'outcome', 'user', 'by', 'ip', 'detail', 'agent'],
    ),
  );
  return 0;
}
