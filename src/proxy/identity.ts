import type { ActiveSession } from '../sessions/index.ts';
import type { App } from '../server/sites.ts';

/**
 * The identity headers for one decision, as a flat [name, value, ...] list: the one place they
 * are built, for a proxied request, a WebSocket upgrade and a forward-auth answer
 * (/.auth/check) alike. Anything the app should learn about the user is added here, and every
 * path gets it. `assertion` is the signed X-Gatehouse-Assertion (tokens/assertion.ts), when
 * the app takes one.
 */
export function identityHeaders(
  app: App,
  active: ActiveSession | undefined,
  assertion: string | undefined,
): readonly string[] {
  if (!active) return NONE;
  const u = active.user;
  const out = ['X-User-Id', u.id];
  if (app.headers.email) out.push(app.headers.email, u.email);
  if (app.headers.name && u.name) out.push(app.headers.name, headerSafe(u.name));
  if (app.headers.groups)
    out.push(
      app.headers.groups,
      u.groups.map((g) => (/^[\x21-\x2b\x2d-\x7e]+$/.test(g) ? g : encodeURIComponent(g))).join(','),
    );
  if (assertion !== undefined && app.headers.assertion) out.push(app.headers.assertion, assertion);
  return out;
}

const NONE: readonly string[] = [];

/** Header values are Latin-1 on the wire: other text is sent percent-encoded (UTF-8). */
function headerSafe(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}
