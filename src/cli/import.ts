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

/**
 * `gatehouse users import <file> [--dry-run] [--json]`: the users of another system, one JSON
 * object per line (JSON Lines):
 *   {"email": "ann@example.com", "name": "Ann", "groups": ["ops"], "emailVerified": true,
 *    "passwordHash": "$2b$10$...", "id": "auth0|5f7c...", "disabled": false}
 * Only email is required. `id` keeps the user id an app knows them by (X-User-Id), so an app
 * moved behind Gatehouse keeps its data; without it one is made. `passwordHash` is checked as it is
 * (accounts/passwords.ts: argon2, bcrypt, Django pbkdf2_sha256) until the user's first sign-in
 * replaces it with Gatehouse's argon2id; without one the user signs in another way (a provider, a
 * sign-in link, a password reset).
 * Every line is checked before anything is written: any problem (each with its line) and nothing
 * is imported, exit 2. An address or id that has an account already is skipped, so an import can
 * be run again. Each user imported is audited (operator, `users import`).
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

interface Parsed {
  line: number;
  user: NewUser & { email: string };
  disabled: boolean;
}

/** The file's users, or every problem with its line. */
function parse(text: string): { users: Parsed[]; problems: string[] } {
  const users: Parsed[] = [];
  const problems: string[] = [];
  const emails = new Map<string, number>();
  const ids = new Map<string, number>();
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    if (!raw.trim()) return;
    const problem = (what: string) => problems.push(`line ${line}: ${what}`);
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      return problem('not a JSON object');
    }
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
    if (sameEmail) return problem(`${email} is on line ${sameEmail} too`);
    emails.set(email, line);
    if (d.id !== undefined) {
      const sameId = ids.get(d.id);
      if (sameId) return problem(`id ${d.id} is on line ${sameId} too`);
      ids.set(d.id, line);
    }
    users.push({
      line,
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
  });
  return { users, problems };
}

export async function importUsers(
  ctx: OperatorContext,
  file: string | undefined,
  flags: { 'dry-run'?: boolean; json?: boolean },
): Promise<number> {
  if (!file) throw new UsageError('gatehouse users import <file.jsonl> [--dry-run] [--json]: name the file');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const { users, problems } = parse(text);
  if (problems.length) {
    for (const p of problems.slice(0, 100)) err(`${file}: ${p}`);
    if (problems.length > 100) err(`${file}: ... and ${problems.length - 100} more`);
    err(`nothing imported: ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
    return 2;
  }
  const imported: { line: number; id: string; email: string }[] = [];
  const skipped: { line: number; email: string; reason: string }[] = [];
  const rehash = new Map<string, number>();
  for (const { line, user, disabled } of users) {
    const skip = (reason: string) => skipped.push({ line, email: user.email, reason });
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
    imported.push({ line, id, email: user.email });
    if (user.passwordHash && needsRehash(user.passwordHash)) {
      const name = hashKind(user.passwordHash);
      rehash.set(name, (rehash.get(name) ?? 0) + 1);
    }
  }
  if (flags.json) {
    out(JSON.stringify({ dryRun: flags['dry-run'] === true, imported, skipped }));
    return 0;
  }
  for (const s of skipped) out(`line ${s.line}: ${s.email} ${s.reason}: skipped`);
  const hashes = [...rehash].map(([name, n]) => `${n} ${name}`).join(', ');
  out(
    `${flags['dry-run'] ? 'would import' : 'imported'} ${imported.length} user${imported.length === 1 ? '' : 's'}` +
      `${skipped.length ? `, skipped ${skipped.length}` : ''}` +
      `${hashes ? `; password hashes to replace with argon2id at each user's first sign-in: ${hashes}` : ''}`,
  );
  return 0;
}
