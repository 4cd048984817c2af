import type { OperatorContext } from './context.ts';
import { findUser } from './users.ts';
import { out, printRows, time, UsageError } from './io.ts';

/**
 * `gatehouse sessions list|revoke --user`: a user's browser sessions and their CLI and MCP
 * logins (OAuth grants) in one list. kind: browser (a cookie session), device (a device-flow
 * login, e.g. gatehouse login), client (an OAuth client such as an MCP client). A revoke
 * applies at the next request of that browser or token.
 */
/**
 * A session's or login's id as the operator sees and types it: hex of the stored base64url id, so
 * it never begins with "-" (which the command line would read as an option: an id lost that way
 * would have revoked every session of the user). The list shows 12 characters; any prefix that
 * names one session will do.
 */
const fullId = (stored: string): string => Buffer.from(stored, 'base64url').toString('hex');
const shownId = (stored: string): string => fullId(stored).slice(0, 12);

export async function sessions(
  ctx: OperatorContext,
  args: string[],
  flags: { user?: string; json?: boolean; all?: boolean; yes?: boolean },
): Promise<number> {
  const [sub, id] = args;
  switch (sub) {
    case 'list': {
      const user = await findUser(ctx, flags.user);
      const now = Date.now();
      const browser = (await ctx.store.sessions.listByUser(user.id)).map((s) => ({
        id: shownId(s.idHash),
        kind: 'browser',
        client: '',
        site: s.site,
        created: time(s.createdAt),
        'last used': time(s.lastSeenAt),
        ip: s.ip ?? '',
        agent: (s.userAgent ?? '').slice(0, 40),
      }));
      const grants = (await ctx.store.oauth.grants.listByUser(user.id, now)).map((g) => ({
        id: shownId(g.id),
        kind: g.kind,
        client: g.clientId === g.clientName ? g.clientId : `${g.clientName} (${g.clientId})`.slice(0, 60),
        site: g.resource,
        created: time(g.createdAt),
        'last used': time(g.lastUsedAt),
        ip: g.ip ?? '',
        agent: (g.userAgent ?? '').slice(0, 40),
      }));
      const rows = [...browser, ...grants];
      printRows(
        rows,
        ['id', 'kind', 'client', 'site', 'created', 'last used', 'ip', 'agent'],
        `no sessions for ${user.email}`,
        flags.json,
      );
      return 0;
    }
    case 'revoke': {
      if (flags.all) return revokeAll(ctx, flags, id);
      const user = await findUser(ctx, flags.user);
      const now = Date.now();
      if (id) {
        const given = id.toLowerCase();
        const browser = (await ctx.store.sessions.listByUser(user.id)).filter((s) =>
          fullId(s.idHash).startsWith(given),
        );
        const grants = (await ctx.store.oauth.grants.listByUser(user.id, now)).filter((g) =>
          fullId(g.id).startsWith(given),
        );
        const n = browser.length + grants.length;
        if (n !== 1)
          throw new UsageError(
            n ? `"${id}" matches several sessions; give more characters` : `no session ${id} for ${user.email}`,
          );
        if (browser[0]) await ctx.store.sessions.delete(browser[0].idHash);
        else await ctx.store.oauth.grants.revoke(grants[0]!.id, now, 'operator');
        out(`revoked ${browser[0] ? 'session' : `${grants[0]!.kind} login`} ${id} of ${user.email}`);
      } else {
        const n =
          (await ctx.store.sessions.deleteByUser(user.id)) +
          (await ctx.store.oauth.grants.revokeByUser(user.id, now, 'operator'));
        out(`revoked ${n} session${n === 1 ? '' : 's'} of ${user.email}`);
      }
      return 0;
    }
    default:
      throw new UsageError('gatehouse sessions list|revoke [id] --user <email>');
  }
}

/**
 * `gatehouse sessions revoke --all --yes`: every browser session and every CLI and MCP login of
 * every user ends at its next request, on every node (after a leak of the store, a stolen master
 * key, a compromised provider). Everyone signs in again; nothing else changes.
 */
async function revokeAll(ctx: OperatorContext, flags: { user?: string; yes?: boolean }, id?: string): Promise<number> {
  if (flags.user || id) throw new UsageError('--all revokes every session of every user: give no --user and no id');
  if (!flags.yes)
    throw new UsageError('gatehouse sessions revoke --all --yes: every user is signed out everywhere; add --yes');
  const browser = await ctx.store.sessions.deleteAll();
  const { grants, pending } = await ctx.store.oauth.grants.revokeAll(Date.now(), 'operator');
  out(
    `revoked every session: ${browser} browser session(s) and ${grants} CLI/MCP login(s)${pending ? `, and ${pending} approval(s) not yet collected` : ''}; everyone signs in again`,
  );
  return 0;
}
