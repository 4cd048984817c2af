import { OAuthError } from './http.ts';
import type { Client } from './clients.ts';

/**
 * Scopes: `offline_access` (advertised, as the MCP spec asks; refresh tokens go to every
 * client registered for the refresh_token grant) plus the names in tokens.scopes, which
 * Gatehouse passes on for the app to interpret. Anything else is invalid_scope.
 */
const OFFLINE_ACCESS = 'offline_access';

export class Scopes {
  readonly supported: readonly string[];
  private readonly set: ReadonlySet<string>;

  constructor(configured: readonly string[]) {
    this.supported = [OFFLINE_ACCESS, ...configured.filter((s) => s !== OFFLINE_ACCESS)];
    this.set = new Set(this.supported);
  }

  /** The scope a client asks for, validated against what exists and what the client may ask; normalized (unique, sorted). */
  request(raw: string | undefined, client: Client): string {
    if (raw === undefined) return '';
    if (raw.length > 1000 || !/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/.test(raw))
      throw new OAuthError(400, 'invalid_scope', 'scope must be space-separated scope names');
    const names = [...new Set(raw.split(' '))].sort();
    for (const s of names) {
      if (!this.set.has(s)) throw new OAuthError(400, 'invalid_scope', `unknown scope "${s.slice(0, 64)}"`);
      if (client.scopes && s !== OFFLINE_ACCESS && !client.scopes.has(s))
        throw new OAuthError(400, 'invalid_scope', `this client may not ask for "${s}"`);
    }
    return names.join(' ');
  }

  /** A narrower scope on refresh (RFC 6749 §6): only what was granted. */
  narrow(raw: string | undefined, granted: string): string {
    if (raw === undefined) return granted;
    const have = new Set(granted.split(' ').filter(Boolean));
    const names = [...new Set(raw.split(' ').filter(Boolean))].sort();
    for (const s of names)
      if (!have.has(s))
        throw new OAuthError(
          400,
          'invalid_scope',
          `"${s.slice(0, 64)}" was not granted; a refresh cannot widen the scope`,
        );
    return names.join(' ');
  }

  static describe(scope: string): { name: string; text: string }[] {
    return scope
      .split(' ')
      .filter(Boolean)
      .map((name) => ({
        name,
        text:
          name === OFFLINE_ACCESS ? 'Stay signed in until you sign it out here or in your account' : `Use "${name}"`,
      }));
  }
}
