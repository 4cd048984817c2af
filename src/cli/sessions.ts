import type { OperatorContext } from './context.ts';
import { findUser } from './users.ts';
import { out, table, UsageError } from './io.ts';

export async function sessions(ctx: OperatorContext, args: string[], flags: { user?: string; json?: boolean }): Promise<number> {
  const [sub, id] = args;
  switch (sub) {
    case 'list': {
      const user = await findUser(ctx, flags.user);
      const list = await ctx.store.sessions.listByUser(user.id);
      const rows = list.map((s) => ({
        id: s.idHash.slice(0, 12),
        kind: 'browser',
        site: s.site,
        created: new Date(s.createdAt).toISOString().slice(0, 19) + 'Z',
        'last seen': new Date(s.lastSeenAt).toISOString().slice(0, 19) + 'Z',
        ip: s.ip ?? '',
        agent: (s.userAgent ?? '').slice(0, 40),
      }));
      if (flags.json) out(JSON.stringify(rows));
      else out(rows.length ? table(rows, ['id', 'kind', 'site', 'created', 'last seen', 'ip', 'agent']) : `no sessions for ${user.email}`);
      return 0;
    }
    case 'revoke': {
      const user = await findUser(ctx, flags.user);
      if (id) {
        const match = (await ctx.store.sessions.listByUser(user.id)).filter((s) => s.idHash.startsWith(id));
        if (match.length !== 1) throw new UsageError(match.length ? `"${id}" matches several sessions; give more characters` : `no session ${id} for ${user.email}`);
        await ctx.store.sessions.delete(match[0]!.idHash);
        out(`revoked session ${id} of ${user.email}`);
      } else {
        const n = await ctx.store.sessions.deleteByUser(user.id);
        out(`revoked ${n} session${n === 1 ? '' : 's'} of ${user.email}`);
      }
      return 0;
    }
    default:
      throw new UsageError('gatehouse sessions list|revoke [id] --user <email>');
  }
}
