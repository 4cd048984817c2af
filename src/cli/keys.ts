import { formatDuration } from '../config/duration.ts';
import { keyPolicy, keyStates, rotateKeys, type SigningAlgorithm } from '../keys/keys.ts';
import { loadSecrets } from '../keys/secrets.ts';
import type { OperatorContext } from './context.ts';
import { out, printRows, time, UsageError } from './io.ts';

/** `gatehouse keys list|rotate`: the signing keys in the store (see src/keys/keys.ts). */
export async function keys(
  ctx: OperatorContext,
  args: string[],
  flags: { json?: boolean; now?: boolean; algorithm?: string },
): Promise<number> {
  const [sub, ...extra] = args;
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const policy = keyPolicy(ctx.config);
  switch (sub) {
    case 'list': {
      const now = Date.now();
      const rows = keyStates(await ctx.store.keys.list(), now).map(({ key, state }) => ({
        kid: key.kid,
        alg: key.alg,
        state,
        published: time(key.createdAt),
        signs: time(key.activatesAt),
        'dropped after': key.retiresAt === null ? '' : time(key.retiresAt),
      }));
      printRows(
        rows,
        ['kid', 'alg', 'state', 'published', 'signs', 'dropped after'],
        'no signing keys yet: Gatehouse makes the first one when it starts',
        flags.json,
      );
      return 0;
    }
    case 'rotate': {
      const algorithm = flags.algorithm;
      if (algorithm !== undefined && algorithm !== 'EdDSA' && algorithm !== 'ES256')
        throw new UsageError('--algorithm is EdDSA or ES256');
      const secrets = await loadSecrets(ctx.config.secrets, ctx.store.kv);
      const r = await rotateKeys(ctx.store, secrets, policy, {
        immediate: flags.now,
        algorithm: algorithm as SigningAlgorithm | undefined,
      });
      const k = r.added;
      if (flags.json) {
        out(
          JSON.stringify({
            kid: k.kid,
            alg: k.alg,
            published: time(k.createdAt),
            signs: time(k.activatesAt),
            othersDroppedAfter: time(r.retireOthersAt),
          }),
        );
        return 0;
      }
      out(`added key ${k.kid} (${k.alg}), published now`);
      if (flags.now) {
        out('it signs from now on; every other key is unpublished now: tokens they signed no longer verify.');
        out(`nodes switch at their next key refresh (within ${formatDuration(policy.refreshMs)}).`);
      } else if (k.activatesAt === k.createdAt) {
        out('it signs from now on (the store had no key).');
      } else {
        out(
          `it signs from ${time(k.activatesAt)} (in ${formatDuration(policy.publishBeforeMs)}: tokens.keys.publishBefore), once every node and JWKS cache has it`,
        );
        out(
          `the keys it replaces stay published until ${time(r.retireOthersAt)} (+ tokens.maxLifetime + tokens.clockSkew), then are dropped`,
        );
      }
      return 0;
    }
    default:
      throw new UsageError('gatehouse keys list [--json] | rotate [--now] [--algorithm EdDSA|ES256]');
  }
}
