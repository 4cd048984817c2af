import type { Warning } from '../config/warning.ts';
import type { Config } from '../config/schema.ts';
import { hostKey } from '../http/protocol.ts';
import { appsOf } from '../sites/index.ts';
import { isLoopbackHost } from '../http/loopback.ts';

/** Settings of the OAuth server (tokens.*) that validate but will hurt; part of `gatehouse check`. */
export function lintOAuth(config: Config): Warning[] {
  const w: Warning[] = [];
  const t = config.tokens;
  const publicUrl = new URL(config.publicUrl);
  const secure = publicUrl.protocol === 'https:';
  const loopback = isLoopbackHost(publicUrl.hostname);
  if (t.accessTokenTtl > t.maxLifetime) {
    w.push({
      key: 'tokens.accessTokenTtl',
      message: `longer than tokens.maxLifetime: access tokens live ${Math.round(t.maxLifetime / 60_000)} minutes, the longest any signed token may.`,
    });
  }
  if (t.refreshTokenTtl > 365 * 86_400_000) {
    w.push({
      key: 'tokens.refreshTokenTtl',
      message:
        'over a year: a lost laptop stays signed in that long unless someone revokes its login (gatehouse sessions revoke).',
    });
  }
  if (t.device.interval < 5000 && !loopback) {
    w.push({
      key: 'tokens.device.interval',
      message: "under 5 s (RFC 8628's default): every waiting CLI polls the token endpoint that often.",
    });
  }
  if (t.reuseGrace > 30_000) {
    w.push({
      key: 'tokens.reuseGrace',
      message:
        'over 30 s: a stolen refresh token replayed that soon after its use gets the same new token instead of revoking the login.',
    });
  }
  // The authorization server lives on publicUrl's own host: an app must be served there.
  const host = hostKey(publicUrl.host, secure);
  if (!appsOf(config).some((a) => hostKey(a.host ?? publicUrl.host, secure) === host)) {
    w.push({
      key: 'publicUrl',
      message: `no app is served on ${publicUrl.host}: the OAuth endpoints and metadata for CLIs and MCP clients are there (issuer = publicUrl), so gatehouse login and MCP clients cannot sign in.`,
    });
  }
  t.clients.forEach((c, i) => {
    if (
      c.grantTypes.includes('refresh_token') &&
      !c.grantTypes.includes('authorization_code') &&
      !c.grantTypes.includes('device_code')
    ) {
      w.push({
        key: `tokens.clients[${i}].grantTypes`,
        message: 'refresh_token alone gets no login to refresh: add authorization_code or device_code.',
      });
    }
    if (c.redirectUris.some((u) => u.startsWith('http://')) && !loopback && c.secret) {
      w.push({
        key: `tokens.clients[${i}].redirectUris`,
        message:
          'a confidential client with a loopback http redirect URI: native apps cannot keep a secret; make it public (no secret), PKCE protects it.',
      });
    }
  });
  return w;
}
