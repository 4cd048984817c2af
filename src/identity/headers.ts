// identity/ (feature): what an app learns of its user: the identity headers (this file) and the signed
// assertion (assertion.ts), the same facts in both.
import { cleanDisplayName } from '../accounts/names.ts';
import type { ActiveSession } from '../sessions/index.ts';
import type { App, IdentityOptIn } from '../sites/index.ts';
import type { User } from '../store/index.ts';

/**
 * The user's address as this app may see it, in the header and the `email` claim alike: only
 * a verified one, unless the app opted into unverified addresses. An address typed at
 * registration proves nothing until its owner follows the mailed link (or a provider, an
 * operator or a password reset vouched for it); an app that maps addresses to accounts would
 * otherwise hand an account to whoever registered its address first.
 */
export function presentedEmail(optIn: IdentityOptIn, user: User): string | null {
  // A service client (client_credentials) has no address.
  if (optIn.email === null || user.email === '') return null;
  return user.emailVerified || optIn.unverifiedEmail ? user.email : null;
}

/** The name as this app may see it, cleaned (accounts/names.ts): one value for the header and the claim. */
export function presentedName(optIn: IdentityOptIn, user: User): string | null {
  return optIn.name === null ? null : cleanDisplayName(user.name);
}

/**
 * The identity headers for one decision, as a flat [name, value, ...] list: the one place they
 * are built, for a proxied request, a bearer-token request, a WebSocket upgrade and a
 * forward-auth answer (/.auth/check) alike. Anything the app should learn about the user is
 * added here, and every path gets it; the assertion's claims (identity/assertion.ts) come from
 * the same presentedEmail / presentedName. `assertion` is the signed X-Gatehouse-Assertion,
 * when the app takes one (app.signed): sent bare under headers.assertion and as
 * "Bearer <jwt>" under headers.assertionBearer. The names are the app's (config/headers.ts:
 * its preset's, or its own).
 */
export function identityHeaders(
  app: App,
  active: ActiveSession | undefined,
  assertion: string | undefined,
): readonly string[] {
  if (!active) return NONE;
  const u = active.user;
  const out = [app.headers.id, u.id];
  const email = presentedEmail(app.headers, u);
  if (email !== null) out.push(app.headers.email!, email);
  const name = presentedName(app.headers, u);
  if (name !== null) out.push(app.headers.name!, headerSafe(name));
  if (app.headers.groups) out.push(app.headers.groups, u.groups.map(groupSafe).join(','));
  if (assertion !== undefined) {
    if (app.headers.assertion) out.push(app.headers.assertion, assertion);
    if (app.headers.assertionBearer) out.push(app.headers.assertionBearer, `Bearer ${assertion}`);
  }
  return out;
}

const NONE: readonly string[] = [];

/**
 * Header values are Latin-1 on the wire: other text is sent percent-encoded (UTF-8), and so is
 * text with a "%" in it, so that percent-decoding the header always gives back the claim's text
 * (a name typed as "%41" must not arrive as "A").
 */
function headerSafe(value: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}

/** A group in the comma-separated list: as is when unambiguous, else percent-encoded (",", " ", "%" included). */
function groupSafe(g: string): string {
  return /^[\x21-\x24\x26-\x2b\x2d-\x7e]+$/.test(g) ? g : encodeURIComponent(g);
}
