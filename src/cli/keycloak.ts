import { z } from 'zod';
import { hashProblem } from '../accounts/passwords.ts';

/**
 * A user of a Keycloak realm export (`kc.sh export --realm <realm> --file realm.json`, or the
 * <realm>-users-<n>.json files of `--users different_files`: one JSON object with `users`), as a
 * record of `users import`'s JSON Lines (cli/import.ts), or why it is skipped, or its problems.
 *   id, email, emailVerified  as they are (the id stays the app's X-User-Id)
 *   firstName lastName        name, or none
 *   enabled: false            disabled
 *   groups                    each group's path without its leading slash: /engineering/backend is
 *                             engineering/backend (the last segment alone would make /sales/admins
 *                             and /eng/admins one group)
 *   credentials               the one of type password, as a hash passwords.ts reads (keycloakHash);
 *                             others (otp, webauthn, password-history) are not read
 *   serviceAccountClientId    a client's service account, not a person: skipped
 *   federationLink            nothing: such a user (LDAP, Kerberos) has no password in the export,
 *                             and is imported without one
 * Realm and client roles are not read: every user has default-roles-<realm>, offline_access and
 * uma_authorization, and what a role meant to an app is for its operator to map to groups.
 */

const Credential = z.object({
  type: z.string(),
  secretData: z.string().optional(),
  credentialData: z.string().optional(),
});

const User = z.object({
  id: z.string().optional(),
  username: z.string().optional(),
  email: z.string().optional(),
  emailVerified: z.boolean().optional(),
  enabled: z.boolean().optional(),
  firstName: z.string().optional(),
  lastName: z.string().optional(),
  groups: z.array(z.string()).optional(),
  credentials: z.array(Credential).optional(),
  serviceAccountClientId: z.string().optional(),
});

/** The username of a Keycloak user, to name it in problems. */
export function keycloakUsername(user: unknown): string | undefined {
  const name = (user as { username?: unknown } | null)?.username;
  return typeof name === 'string' ? name.slice(0, 100) : undefined;
}

export function fromKeycloak(
  user: unknown,
): { record: Record<string, unknown> } | { skip: string } | { problems: string[] } {
  const r = User.safeParse(user);
  if (!r.success) return { problems: r.error.issues.map((i) => `${i.path.join('.') || 'the user'}: ${i.message}`) };
  const u = r.data;
  if (u.serviceAccountClientId !== undefined)
    return { skip: `the service account of client ${u.serviceAccountClientId}, not a person` };
  const problems: string[] = [];
  if (u.email === undefined) problems.push('no email: Gatehouse signs users in by their address');
  const passwords = (u.credentials ?? []).filter((c) => c.type === 'password');
  if (passwords.length > 1) problems.push('credentials: more than one password');
  let passwordHash: string | undefined;
  if (passwords[0]) {
    const h = keycloakHash(passwords[0]);
    const wrong = 'problem' in h ? h.problem : hashProblem(h.hash);
    if (wrong) problems.push(`password credential: ${wrong}`);
    else if ('hash' in h) passwordHash = h.hash;
  }
  if (problems.length) return { problems };
  const name = [u.firstName, u.lastName].filter(Boolean).join(' ').trim();
  return {
    record: {
      ...(u.id === undefined ? {} : { id: u.id }),
      email: u.email,
      ...(name ? { name } : {}),
      groups: [...new Set((u.groups ?? []).map((path) => path.replace(/^\//, '')))],
      emailVerified: u.emailVerified ?? false,
      disabled: u.enabled === false,
      ...(passwordHash ? { passwordHash } : {}),
    },
  };
}

const Secret = z.object({ value: z.string(), salt: z.string() });
const Data = z.object({
  hashIterations: z.number().int().min(1).max(999_999_999),
  algorithm: z.string(),
  additionalParameters: z.record(z.string(), z.array(z.string())).optional(),
});
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const PBKDF2: Record<string, string> = { pbkdf2: 'sha1', 'pbkdf2-sha256': 'sha256', 'pbkdf2-sha512': 'sha512' };

/**
 * A Keycloak password credential as a hash passwords.ts reads, or why not (a sentence). Keycloak keeps, as JSON strings, secretData {value, salt} (both base64) and
 * credentialData {hashIterations, algorithm, additionalParameters}:
 *   pbkdf2, pbkdf2-sha256, pbkdf2-sha512   PBKDF2 with HMAC-SHA1, -SHA256, -SHA512, a key as long
 *     as the value (Pbkdf2PasswordHashProvider: 512 bits before Keycloak 24's 256 for sha256), of
 *     the password's UTF-8 (PBEKeySpec), not normalized → $pbkdf2-<digest>$i=<iterations>$salt$value
 *   argon2   Keycloak 24+; type id, i or d, version 1.3, hashLength, memory, parallelism in
 *     additionalParameters, t = hashIterations (Argon2PasswordHashProvider) → its PHC string
 */
export function keycloakHash(credential: {
  secretData?: string;
  credentialData?: string;
}): { hash: string } | { problem: string } {
  const problem = (p: string) => ({ problem: p });
  if (credential.secretData === undefined || credential.credentialData === undefined)
    return problem(
      'no secretData and credentialData: only the hashes of a Keycloak export are read, not a value in clear',
    );
  const secret = Secret.safeParse(parseJson(credential.secretData));
  if (!secret.success) return problem('secretData is not Keycloak JSON with a value and a salt');
  const data = Data.safeParse(parseJson(credential.credentialData));
  if (!data.success) {
    const issue = data.error.issues[0]!;
    return problem(`credentialData${issue.path.map((p) => `.${String(p)}`).join('')}: ${issue.message}`);
  }
  const { value, salt } = secret.data;
  if (!BASE64.test(value) || !BASE64.test(salt)) return problem('its value and salt are not base64');
  const b64 = (s: string) => s.replace(/=+$/, '');
  const { algorithm, hashIterations } = data.data;
  const digest = PBKDF2[algorithm];
  if (digest) return { hash: `$pbkdf2-${digest}$i=${hashIterations}$${b64(salt)}$${b64(value)}` };
  if (algorithm !== 'argon2')
    return problem(
      `algorithm ${JSON.stringify(algorithm.slice(0, 50))} is none of pbkdf2-sha256, pbkdf2-sha512, pbkdf2, argon2`,
    );
  const param = (key: string) => data.data.additionalParameters?.[key]?.[0] ?? '';
  const [type, version, hashLength, memory, parallelism] = [
    'type',
    'version',
    'hashLength',
    'memory',
    'parallelism',
  ].map(param) as [string, string, string, string, string];
  if (!['id', 'i', 'd'].includes(type))
    return problem(`argon2 type ${JSON.stringify(type.slice(0, 10))} is none of id, i, d`);
  if (version !== '1.3') return problem(`argon2 version ${JSON.stringify(version.slice(0, 10))}: only 1.3 is read`);
  if (![hashLength, memory, parallelism].every((n) => /^\d{1,9}$/.test(n)))
    return problem('its argon2 hashLength, memory and parallelism are not numbers');
  if (Buffer.from(value, 'base64').length !== Number(hashLength)) return problem('its value is not hashLength bytes');
  return { hash: `$argon2${type}$v=19$m=${memory},t=${hashIterations},p=${parallelism}$${b64(salt)}$${b64(value)}` };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
