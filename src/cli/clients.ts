import { cleanDisplayName } from '../accounts/names.ts';
import { BUILTIN_CLI_CLIENT } from '../config/oauth.ts';
import type { OperatorContext } from './context.ts';
import { out, printRows, time, UsageError } from './io.ts';

/**
 * `gatehouse clients list [--json]` and `gatehouse clients remove <id>`: the OAuth clients
 * (docs/oauth-server.md#clients) with their live logins: the built-in CLI client, those of
 * tokens.clients, those that registered themselves (RFC 7591: MCP clients) and those known by a
 * metadata document's URL (found through their logins). `remove` takes a registered client away
 * with every login it holds, in one transaction, so a rogue or abandoned registration can be cut
 * off; for a metadata-document client it ends its logins (nothing of it is stored). A configured
 * client is changed in the config.
 */
export async function clients(ctx: OperatorContext, args: string[], flags: { json?: boolean }): Promise<number> {
  const configured = new Map(ctx.config.tokens.clients.map((c) => [c.id, c]));
  switch (args[0]) {
    case 'list': {
      const logins = await ctx.store.oauth.grants.countByClient(Date.now());
      const row = (id: string, kind: string, name: string, registered = '', from = '') => ({
        id,
        kind,
        name,
        logins: logins.get(id) ?? 0,
        registered,
        from,
      });
      const rows = [
        row(BUILTIN_CLI_CLIENT, 'built-in', 'Gatehouse CLI'),
        ...[...configured.values()].map((c) => row(c.id, c.federated ? 'config, federated' : 'config', c.name)),
        ...(await ctx.store.oauth.clients.list()).map((c) =>
          // A name the client chose: cleaned of controls and bidi characters before a terminal shows it.
          row(c.id, 'registered', cleanDisplayName(c.metadata.client_name) ?? '', time(c.createdAt), c.createdIp ?? ''),
        ),
        ...[...logins.keys()]
          .filter((id) => id.startsWith('https://') || id.startsWith('http://'))
          .map((id) => row(id, 'metadata document', new URL(id).host)),
      ];
      printRows(rows, ['id', 'kind', 'name', 'logins', 'registered', 'from'], 'no clients', flags.json);
      return 0;
    }
    case 'remove': {
      const id = args[1];
      if (!id) throw new UsageError('gatehouse clients remove <id>: name the client (gatehouse clients list)');
      if (id === BUILTIN_CLI_CLIENT) throw new UsageError(`${id} is built in: it cannot be removed`);
      if (configured.has(id))
        throw new UsageError(
          `${id} is in tokens.clients: remove it from the config (or give it a new secret) and restart`,
        );
      const { removed, revoked } = await ctx.store.oauth.clients.remove(id, Date.now());
      if (!removed && revoked === 0) throw new UsageError(`no registered client ${id}, and no login of one`);
      out(
        removed
          ? `removed ${id}; ${revoked} login(s) ended`
          : `${revoked} login(s) of ${id} ended; its metadata document is read again at its next authorization (tokens.clientIdMetadataDocuments: false refuses every such client)`,
      );
      return 0;
    }
    default:
      throw new UsageError('gatehouse clients list|remove');
  }
}
