import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { checkDisplayName } from '../accounts/names.ts';
import { hashKind, hashProblem, needsRehash } from '../accounts/passwords.ts';
import { normalizeEmail } from '../config/email.ts';
import { SERVICE_PREFIX } from '../oauth/clients.ts';
import { StoreConflictError, type NewUser } from '../store/index.ts';
import { operatorEvent } from './audit.ts';
import type { OperatorContext } from './context.ts';
import { err, out, UsageError } from './io.ts';
import { fromKeycloak, keycloakUsername } from './keycloak.ts';

/**
 * `gatehouse users import <file> [--dry-run] [--json]`: the users of another system, one JSON
 * object per line (JSON Lines):
 *   {"email": "ann@example.com", "name": "Ann", "groups": ["ops"], "emailVerified": true,
 *    "passwordHash": "$2b$10$...", "id": "auth0|5f7c...", "disabled": false}
 * Only email is required. `id` keeps the user id an app knows them by (X-User-Id), so an app
 * moved behind Gatehouse keeps its data; without it one is made. `passwordHash` is checked as it is
 * (accounts/passwords.ts: argon2, bcrypt, Django pbkdf2_sha256, $pbkdf2-sha256$) until the user's
 * first sign-in replaces it with Gatehouse's argon2id; without one the user signs in another way
 * (a provider, a sign-in link, a password reset).
 * Or a Keycloak realm export, a file that is one JSON object with a `users` array: each user is
 * read as such a record (cli/keycloak.ts), a service account skipped.
 * Every user is checked before anything is written: any problem (each with its line, or its place
 * in `users`) and nothing is imported, exit 2. An address or id that has an account already is
 * skipped, so an import can be run again. Each user imported is audited (operator, `users import`).
 */

/** User ids an import may give: what IdPs use (auth0|..., UUIDs, numbers), at most 64 bytes (a WebAuthn user handle). */
const ID = /^[A-Za-z0-9._~@+|:=-]{1,64}$/;

const Line = z.strictObject({
  email: z.string(),
  name: z.string().optional(),
  groups: z.array(z.string().min(1).max(100)).max(100).optional(),
  emailVerified: z.boolean().optional(),
  passwordHash: z.string().max(512).optional(),
  id: z
    .string()
    .regex(ID, 'letters, digits and ._~@+|:=- only, at most 64 characters')
    .refine((id) => !id.startsWith(SERVICE_PREFIX), `ids beginning with ${SERVICE_PREFIX} are those of service clients`)
    .optional(),
  disabled: z.boolean().optional(),
});

/** Where a user is in the file: its line, or its place in a Keycloak export's `users`. */
type At = { line: number } | { user: number; username?: string };
const where = (at: At) =>
  'line' in at ? `line ${at.line}` : `users[${at.user}]${at.username === undefined ? '' : ` (${at.username})`}`;

interface Parsed {
  at: At;
  user: NewUser & { email: string };
  disabled: boolean;
}

type Skipped = At & { email?: string; reason: string };

/** The users of a Keycloak realm export (one JSON object with `users`), or undefined for JSON Lines. */
function keycloakUsers(text: string): unknown[] | string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const { users, realm } = (json ?? {}) as { users?: unknown; realm?: unknown };
  if (Array.isArray(users)) return users;
  if (typeof realm === 'string' && users === undefined)
    return `a Keycloak export of realm ${realm} without users: with --users different_files they are in ${realm}-users-<n>.json`;
  return undefined;
}

/** The file's users and those skipped at once (service accounts), or every problem with where it is. */
function parse(text: string): { users: Parsed[]; skipped: Skipped[]; problems: string[] } {
  const users: Parsed[] = [];
  const skipped: Skipped[] = [];
  const problems: string[] = [];
  const emails = new Map<string, At>();
  const ids = new Map<string, At>();
  const check = (at: At, json: unknown) => {
    const problem = (what: string) => problems.push(`${where(at)}: ${what}`);
    const r = Line.safeParse(json);
    if (!r.success) {
      for (const issue of r.error.issues) problem(`${issue.path.join('.') || 'the line'}: ${issue.message}`);
      return;
    }
    const d = r.data;
    const email = normalizeEmail(d.email);
    if (!email) return problem(`email: not an email address: ${JSON.stringify(d.email.slice(0, 100))}`);
    const named = checkDisplayName(d.name);
    if (!named.ok) return problem(`name: ${named.error}`);
    const hashWrong = d.passwordHash === undefined ? undefined : hashProblem(d.passwordHash);
    if (hashWrong) return problem(`passwordHash: ${hashWrong}`);
    const sameEmail = emails.get(email);
    if (sameEmail) return problem(`${email} is on ${where(sameEmail)} too`);
    emails.set(email, at);
    if (d.id !== undefined) {
      const sameId = ids.get(d.id);
      if (sameId) return problem(`id ${d.id} is on ${where(sameId)} too`);
      ids.set(d.id, at);
    }
    users.push({
      at,
      user: {
        ...(d.id === undefined ? {} : { id: d.id }),
        email,
        name: named.name,
        groups: d.groups ?? [],
        emailVerified: d.emailVerified ?? false,
        passwordHash: d.passwordHash ?? null,
      },
      disabled: d.disabled ?? false,
    });
  };
  const keycloak = keycloakUsers(text);
  if (typeof keycloak === 'string') problems.push(keycloak);
  else if (keycloak)
    keycloak.forEach((u, i) => {
      const at = { user: i, username: keycloakUsername(u) };
      const k = fromKeycloak(u);
      if ('skip' in k) skipped.push({ ...at, reason: k.skip });
      else if ('problems' in k) for (const p of k.problems) problems.push(`${where(at)}: ${p}`);
      else check(at, k.record);
    });
  else
    text.split('\n').forEach((raw, i) => {
      if (!raw.trim()) return;
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        problems.push(`line ${i + 1}: not a JSON object`);
        return;
      }
      check({ line: i + 1 }, json);
    });
  return { users, skipped, problems };
}

export async function importUsers(
  ctx: OperatorContext,
  file: string | undefined,
  flags: { 'dry-run'?: boolean; json?: boolean },
): Promise<number> {
  if (!file)
    throw new UsageError(
      'gatehouse users import <file.jsonl | keycloak-realm.json> [--dry-run] [--json]: name the file',
    );
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const { users, skipped, problems } = parse(text);
  if (problems.length) {
    for (const p of problems.slice(0, 100)) err(`${file}: ${p}`);
    if (problems.length > 100) err(`${file}: ... and ${problems.length - 100} more`);
    err(`nothing imported: ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
    return 2;
  }
  const imported: (At & { id: string; email: string })[] = [];
  const rehash = new Map<string, number>();
  for (const { at, user, disabled } of users) {
    const skip = (reason: string) => skipped.push({ ...at, email: user.email, reason });
    if (await ctx.store.users.getByEmail(user.email)) {
      skip('has an account already');
      continue;
    }
    if (user.id !== undefined && (await ctx.store.users.get(user.id))) {
      skip(`the id ${user.id} is another user's`);
      continue;
    }
    let id = user.id ?? '(new)';
    if (!flags['dry-run']) {
      try {
        id = (await ctx.store.users.create(user)).id;
      } catch (e) {
        if (!(e instanceof StoreConflictError)) throw e;
        skip('has an account already');
        continue;
      }
      if (disabled) await ctx.store.users.update(id, { disabled: true });
      await ctx.store.audit.append([operatorEvent('operator', id, 'success', { command: 'users import' })]);
    }
    imported.push({ ...at, id, email: user.email });
    if (user.passwordHash && needsRehash(user.passwordHash)) {
      const name = hashKind(user.passwordHash);
      rehash.set(name, (rehash.get(name) ?? 0) + 1);
    }
  }
  const order = (s: Skipped) => ('line' in s ? s.line : s.user);
  skipped.sort((a, b) => order(a) - order(b));
  if (flags.json) {
    out(JSON.stringify({ dryRun: flags['dry-run'] === true, imported, skipped }));
    return 0;
  }
  for (const s of skipped) out(`${where(s)}: ${s.email === undefined ? '' : `${s.email} `}${s.reason}: skipped`);
  const hashes = [...rehash].map(([name, n]) => `${n} ${name}`).join(', ');
  out(
    `${flags['dry-run'] ? 'would import' : 'imported'} ${imported.length} user${imported.length === 1 ? '' : 's'}` +
      `${skipped.length ? `, skipped ${skipped.length}` : ''}` +
      `${hashes ? `; password hashes to replace with argon2id at each user's first sign-in: ${hashes}` : ''}`,
  );
  return 0;
}
