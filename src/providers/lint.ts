import type { Config } from '../config/schema.ts';
import { isLoopbackHost } from '../http/loopback.ts';
import { appsOf, basePath, buildSites } from '../sites/index.ts';
import { scopesOf } from '../config/providers.ts';
import { formatDuration } from '../config/duration.ts';
import { backchannelLogoutUri, postLogoutUri, redirectUri, relayedProviders } from './service.ts';

/** Provider settings that validate but will hurt; part of `gatehouse check` (cli/lint.ts). */
export function lintProviders(config: Config): { key: string; message: string }[] {
  const w: { key: string; message: string }[] = [];
  const relayed = relayedProviders(config);
  config.providers.forEach((p, i) => {
    const key = `providers[${i}]`;
    if (p.type === 'oidc') {
      if (!p.clientSecret)
        w.push({
          key: `${key}.clientSecret`,
          message: `no clientSecret: Gatehouse signs in to ${p.issuer} as a public client (PKCE only). Most providers require a secret for a web app; set it from the environment ("\${...}").`,
        });
      if (new URL(p.issuer).protocol === 'http:')
        w.push({
          key: `${key}.issuer`,
          message: `${p.issuer} is plain http (allowed on loopback for development only).`,
        });
    }
    const scopes: readonly string[] = scopesOf(p);
    if (
      relayed.has(p.id) &&
      p.type === 'oidc' &&
      !scopes.includes('offline_access') &&
      !p.authorizationParams?.access_type
    ) {
      w.push({
        key: `${key}.scopes`,
        message: `tokenRelay uses "${p.id}" but its scopes lack offline_access: most providers then issue no refresh token, and users must sign in again whenever the access token expires (Google: authorizationParams {access_type: offline, prompt: consent}).`,
      });
    }
    if (p.revalidateGrace > 0 && p.revalidate === 0)
      w.push({
        key: `${key}.revalidateGrace`,
        message: `revalidateGrace only applies with revalidate: "${p.id}" does not revalidate its sessions, so nothing ends when it cannot be asked.`,
      });
    if (p.revalidate > 0) {
      // GitHub's OAuth apps issue no refresh token, but their access tokens confirm a sign-in.
      if (p.type === 'oidc' && !scopes.includes('offline_access') && !p.authorizationParams?.access_type)
        w.push({
          key: `${key}.revalidate`,
          message: `the scopes of "${p.id}" lack offline_access, so most providers issue no refresh token: each sign-in through it then lasts revalidate (${formatDuration(p.revalidate)}) and the user signs in again, instead of being confirmed with the provider in the background.`,
        });
      if (p.revalidate < 60_000)
        w.push({
          key: `${key}.revalidate`,
          message: `every active session signed in through "${p.id}" asks the provider every ${formatDuration(p.revalidate)}: a minute or more is kinder to it.`,
        });
      if (p.revalidate >= config.sessions.absoluteTimeout)
        w.push({
          key: `${key}.revalidate`,
          message: `revalidate is not shorter than sessions.absoluteTimeout (${formatDuration(config.sessions.absoluteTimeout)}): sessions end before the provider is asked.`,
        });
    }
    if (p.syncGroups && p.revalidate === 0)
      w.push({
        key: `${key}.syncGroups`,
        message: `"${p.id}" does not revalidate: a group removed at the provider is taken from the user only at their next sign-in through it (revalidate, e.g. 15m, reads the groups again in between${p.type === 'oidc' ? ', with offline_access among the scopes' : ''}).`,
      });
    if (p.syncGroups && p.type === 'github' && !scopes.includes('read:org'))
      w.push({
        key: `${key}.syncGroups`,
        message: `"${p.id}" sends no groups without the read:org scope (or organizations): with syncGroups every sign-in through it empties the user's groups.`,
      });
    if (p.linkByEmail && p.trustEmail) {
      w.push({
        key: `${key}.linkByEmail`,
        message: `linkByEmail with trustEmail: anyone who can make "${p.id}" assert an address joins the account that has it. Only for a provider that owns its users' domains.`,
      });
    }
    if (p.registration === 'open' && config.accounts.registration !== 'open') {
      w.push({
        key: `${key}.registration`,
        message: `anyone who can sign in at "${p.id}" gets an account, though accounts.registration is ${config.accounts.registration}.`,
      });
    }
  });
  if (
    config.providers.length &&
    new URL(config.publicUrl).protocol === 'http:' &&
    !isLoopbackHost(new URL(config.publicUrl).hostname)
  ) {
    w.push({
      key: 'providers',
      message: 'providers redirect back to a plain-http publicUrl: authorization codes cross the network in clear.',
    });
  }
  return w;
}

/** "Register these at the provider": every site's exact redirect URI (and post-logout URI). */
export function providerRegistrations(config: Config): string[] {
  if (!config.providers.length) return [];
  const sites = [...buildSites(config).values()];
  // Own routes sit below publicUrl's path (https://example.com/app/ → /app/.auth).
  const prefix = basePath(config.publicUrl) + config.authPrefix;
  const lines = ['providers (register these URIs at each provider):'];
  for (const p of config.providers) {
    lines.push(`  ${p.id} (${p.type}${p.type === 'oidc' ? `, ${p.issuer}` : `, ${p.url}`})`);
    for (const s of sites) lines.push(`    redirect URI:             ${redirectUri(s.origin, prefix, p.id)}`);
    if (p.type === 'oidc' && p.endSession)
      for (const s of sites) lines.push(`    post-logout redirect URI: ${postLogoutUri(s.origin, prefix)}`);
    // One per client at the provider; any site's ends the sessions of every site.
    if (p.type === 'oidc' && p.backchannelLogout)
      lines.push(
        `    back-channel logout URI:  ${backchannelLogoutUri(new URL(config.publicUrl).origin, prefix, p.id)}`,
      );
    const apps = appsOf(config)
      .filter((a) => a.tokenRelay === p.id || a.routes.some((r) => r.tokenRelay === p.id))
      .map((a) => a.name);
    if (apps.length) lines.push(`    access token relayed to:  ${apps.join(', ')}`);
    if (p.revalidate > 0)
      lines.push(
        `    sessions revalidated:     every ${formatDuration(p.revalidate)} with the refresh token${p.type === 'github' ? " (an OAuth app's: the access token)" : ''} (a refusal ends the session)`,
      );
    if (p.type === 'github' && scopesOf(p).includes('read:org'))
      lines.push(
        `    groups:                   organizations and teams (read:org)${p.organizations ? `; members of ${p.organizations.join(', ')} only` : ''}`,
      );
    if (p.syncGroups)
      lines.push(`    user's groups:            set from its groups at every sign-in and token refresh (syncGroups)`);
    if (p.type === 'oidc' && p.bearerTokens)
      lines.push(
        `    access tokens accepted:   aud ${p.bearerTokens.audience.join(' or ')}, on ${p.bearerTokens.apps?.join(', ') ?? 'every app'} (valid until their exp)`,
      );
  }
  return lines;
}
