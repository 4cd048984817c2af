import { normalizeEmail } from '../config/email.ts';
import { checkDisplayName } from '../accounts/names.ts';
import { hashKind, hashPassword, needsRehash, passwordProblem } from '../accounts/passwords.ts';
import { factorTypes, resetFactors } from '../mfa/factors.ts';
import { EmailTokens } from '../accounts/email-tokens.ts';
import { awaitingAcceptance, Invitations } from '../accounts/invitations.ts';
import { deleteUser } from '../accounts/deletion.ts';
import { createLogger } from '../log/index.ts';
import { Mailer } from '../mail/mailer.ts';
import { humanDuration } from '../mail/messages.ts';
import { buildSites } from '../sites/index.ts';
import type { Store, User } from '../store/index.ts';
import type { OperatorContext } from './context.ts';
import { tellApps } from './events.ts';
import { operatorEvent } from './audit.ts';
import { err, out, printRows, readSecret, time, UsageError } from './io.ts';

export async function findUser(ctx: OperatorContext, who: string | undefined): Promise<User> {
  if (!who) throw new UsageError('name a user by email or id');
  const email = normalizeEmail(who);
  const user = email ? await ctx.store.users.getByEmail(email) : await ctx.store.users.get(who);
  if (!user) throw new UsageError(`no user ${who}`);
  return user;
}

/**
 * disabled; invited (a live invitation not yet accepted: no way to sign in until it is);
 * invitation expired (never accepted and the link no longer works: `users invite` again);
 * active.
 */
type Status = 'disabled' | 'invited' | 'invitation expired' | 'active';

/** set, none, or the kind of an imported (or older) hash that the user's next sign-in replaces. */
const password = (hash: string | null) =>
  hash === null ? 'none' : needsRehash(hash) ? `${hashKind(hash)} until sign-in` : 'set';

function row(u: User, factors: string[], status: Status = u.disabled ? 'disabled' : 'active') {
  return {
    id: u.id,
    email: u.email,
    verified: u.emailVerified ? 'yes' : 'no',
    name: u.name ?? '',
    groups: u.groups.join(','),
    status,
    password: password(u.passwordHash),
    factors: factors.join(','),
    created: time(u.createdAt),
  };
}

const rows = async (store: Store, list: User[]) => {
  const invited = await store.emailTokens.holders('invite', Date.now());
  return Promise.all(
    list.map(async (u) => {
      const status: Status = u.disabled
        ? 'disabled'
        : invited.has(u.id)
          ? 'invited'
          : (await awaitingAcceptance(store, u))
            ? 'invitation expired'
            : 'active';
      return row(u, await factorTypes(store, u.id), status);
    }),
  );
};

export async function users(
  ctx: OperatorContext,
  args: string[],
  flags: {
    name?: string;
    groups?: string;
    json?: boolean;
    'password-stdin'?: boolean;
    yes?: boolean;
    'dry-run'?: boolean;
  },
): Promise<number> {
  const [sub, who] = args;
  switch (sub) {
    case 'add': {
      const email = normalizeEmail(who);
      if (!email) throw new UsageError('gatehouse users add <email> [--name N] [--groups a,b]: give a valid email');
      const named = checkDisplayName(flags.name);
      if (!named.ok) throw new UsageError(`--name: ${named.error}`);
      const password = await readSecret('Password: ', true);
      const problem = passwordProblem(password, { minLength: ctx.config.accounts.minPasswordLength, email });
      if (problem) throw new UsageError(problem);
      const groups = flags.groups
        ? flags.groups
            .split(',')
            .map((g) => g.trim())
            .filter(Boolean)
        : [];
      // An operator vouches for the address.
      const user = await ctx.store.users.create({
        email,
        name: named.name,
        groups,
        passwordHash: await hashPassword(password),
        emailVerified: true,
      });
      out(flags.json ? JSON.stringify(row(user, [])) : `added ${user.email} (${user.id})`);
      return 0;
    }
    case 'list': {
      const list = await rows(ctx.store, await ctx.store.users.list({ limit: 10_000 }));
      printRows(
        list,
        ['id', 'email', 'verified', 'name', 'groups', 'status', 'password', 'factors', 'created'],
        'no users',
        flags.json,
      );
      return 0;
    }
    case 'disable':
    case 'enable': {
      const user = await findUser(ctx, who);
      await ctx.accounts.setDisabled(user.id, sub === 'disable');
      out(`${sub}d ${user.email}${sub === 'disable' ? '; their sessions have ended' : ''}${await tellApps(ctx)}`);
      return 0;
    }
    case 'set-password': {
      const user = await findUser(ctx, who);
      const result = await ctx.accounts.setPassword(user.id, await readSecret('New password: ', true));
      if (!result.ok) throw new UsageError(result.error);
      out(`password set for ${user.email}; their sessions have ended`);
      return 0;
    }
    case 'set-groups': {
      const user = await findUser(ctx, who);
      const groups = (args[2] ?? '')
        .split(',')
        .map((g) => g.trim())
        .filter(Boolean);
      await ctx.store.users.update(user.id, { groups });
      out(`groups of ${user.email}: ${groups.join(', ') || '(none)'}`);
      return 0;
    }
    case 'reset-mfa': {
      const user = await findUser(ctx, who);
      const had = await factorTypes(ctx.store, user.id);
      await resetFactors(ctx.store, user.id);
      out(
        `second factors of ${user.email} removed (${had.join(', ') || 'none'}); their sessions and CLI/MCP logins have ended`,
      );
      return 0;
    }
    case 'invite':
      return invite(ctx, who, flags);
    case 'import':
      return (await import('./import.ts')).importUsers(ctx, who, flags);
    case 'delete': {
      const user = await findUser(ctx, who);
      if (!flags.yes)
        throw new UsageError(
          `gatehouse users delete ${who} --yes: deletes ${user.email} with their sessions, CLI/MCP logins, linked providers and second factors; it cannot be undone`,
        );
      const mail = operatorMailer(ctx);
      const notice = Promise.withResolvers<boolean>();
      const deleted = await deleteUser({ store: ctx.store, throttle: NO_THROTTLE, events: ctx.events }, user, {
        mailer: mail?.mailer,
        appTitle: mail?.title ?? '',
        by: 'operator',
        settled: notice.resolve,
      });
      if (deleted) await ctx.store.audit.append([operatorEvent('account_deleted', user.id, 'success')]);
      const sent = await notice.promise;
      await mail?.mailer.close(1000);
      if (!deleted) throw new UsageError(`no user ${who}`);
      out(
        `deleted ${user.email} (${user.id})${sent ? '; a notice was mailed to the address' : ''}${await tellApps(ctx)}`,
      );
      return 0;
    }
    default:
      throw new UsageError(
        'gatehouse users add|list|disable|enable|set-password|set-groups|reset-mfa|invite|import|delete',
      );
  }
}

/** An operator's command does not count against the per-address mail limit of the users' own requests. */
const NO_THROTTLE = { takeMail: async () => ({ ok: true as const }) };

/**
 * A mailer for an operator command, when email is configured, and the title of publicUrl's
 * site for its messages. Its failures go to stderr (its own log lines say why).
 */
function operatorMailer(ctx: OperatorContext): { mailer: Mailer; title: string } | undefined {
  const email = ctx.config.email;
  if (!email) return undefined;
  const origin = new URL(ctx.config.publicUrl).origin;
  const title =
    [...buildSites(ctx.config).values()].find((s) => s.origin === origin)?.title ?? ctx.config.title ?? ctx.config.name;
  const mailer = new Mailer(email, { logger: createLogger('error', process.stderr), publicUrl: ctx.config.publicUrl });
  return { mailer, title };
}

/**
 * gatehouse users invite <email> [--groups a,b] [--name N]: the invited user and their link
 * (accounts/invitations.ts), mailed, or printed when no email is configured or it could not be
 * sent. The link signs in whoever opens it first: it is shown to the operator only then.
 */
async function invite(
  ctx: OperatorContext,
  who: string | undefined,
  flags: { name?: string; groups?: string; json?: boolean },
): Promise<number> {
  const invitations = new Invitations(ctx.store, new EmailTokens(ctx.store), ctx.config);
  const groups =
    flags.groups === undefined
      ? undefined
      : flags.groups
          .split(',')
          .map((g) => g.trim())
          .filter(Boolean);
  const result = await invitations.invite({ email: who, groups, name: flags.name });
  if (!result.ok) throw new UsageError(`users invite: ${result.error}`);
  const { user, link, again } = result;
  const valid = humanDuration(invitations.ttlMs);
  let mailed = false;
  const email = ctx.config.email;
  const mail = operatorMailer(ctx);
  if (mail) {
    const { mailer, title } = mail;
    mailed = await new Promise<boolean>((resolve) => {
      if (!mailer.send({ ...invitations.mail(user, link, title), settled: resolve })) resolve(false);
    });
    await mailer.close(1000);
  }
  const what = `${again ? 'invited again' : 'invited'} ${user.email}${user.groups.length ? ` (groups: ${user.groups.join(', ')})` : ''}`;
  if (flags.json) {
    out(JSON.stringify({ ...row(user, [], 'invited'), mailed, expiresIn: valid, ...(mailed ? {} : { link }) }));
    return mailed || !email ? 0 : 1;
  }
  if (mailed) {
    out(
      `${what}: the link is mailed; it works once, for ${valid}${again ? ', and the earlier one no longer does' : ''}`,
    );
    return 0;
  }
  if (email) err('gatehouse: the invitation could not be mailed; hand over this link another way:');
  else out(`${what}. No email is configured: hand over this link yourself (it works once, for ${valid}):`);
  out(link);
  return email ? 1 : 0;
}
