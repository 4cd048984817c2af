import { formatDuration } from '../config/duration.ts';
import { describeCors } from '../http/cors.ts';
import { paths } from '../http/paths.ts';
import { normalizeTarget } from '../http/target.ts';
import type { Allow } from '../policy/rules.ts';
import { appPath } from '../sites/index.ts';
import { ruleFor } from './decide.ts';
import type { Routes } from './route.ts';

/**
 * The `gatehouse check --explain` entry point of the pipeline: how a URL is routed (route.ts)
 * and which app and rule decide it (decide.ts's ruleFor), in words. Without a store: it
 * explains the rule-level decision, not a session's. `u`: `url` parsed against publicUrl; `ip`:
 * the client address rules with `from` are matched against (none: they match nobody).
 */
export function explain(routes: Routes, url: string, u: URL, method: string, ip?: string): string {
  const site = routes.siteFor(u.host);
  const rawPath = url.startsWith('/') ? url : url.slice(url.indexOf(u.host) + u.host.length) || '/';
  if (!site) {
    const configured = [...routes.sites.keys()].join(', ');
    if (routes.anyHost(method, rawPath.split('#')[0]!))
      return `${u.host}: no site answers for this host, but ${rawPath} is Gatehouse's own route, answered whatever the Host (configured: ${configured})`;
    return `${u.host}: no site answers for this host → 421 (configured: ${configured})`;
  }
  const target = normalizeTarget(rawPath.split('#')[0]!);
  if (!target.ok) return `${rawPath}: refused with 400 (${target.reason})`;
  const lines = [
    `${method} ${site.origin}${target.path}${target.path !== rawPath.split('?')[0] ? `   (normalized from ${rawPath.split('?')[0]})` : ''}`,
  ];
  const routed = routes.route(method, target.path);
  if (routed.kind === 'outside_base') return [...lines, `  outside publicUrl's path ${site.home} → 404`].join('\n');
  if (routed.kind === 'own')
    return [...lines, `  Gatehouse's own route (${routes.prefix}); never forwarded`].join('\n');
  if (routed.kind === 'well_known')
    return [
      ...lines,
      routed.path === paths.jwks
        ? "  Gatehouse's signing keys (JWKS), on every site; never forwarded"
        : `  Gatehouse's document (${routed.entry.path}), on every site; never forwarded`,
    ].join('\n');
  const found = ruleFor(site, method, target.path, ip);
  if (!found) return [...lines, '  no app serves this path → 404'].join('\n');
  const { app, rule } = found;
  const more = app.upstream.urls.length > 1 ? ` (or one of its ${app.upstream.urls.length - 1} other replicas)` : '';
  lines.push(
    `  app "${app.name}" → ${app.upstream.url.origin}${app.upstream.basePath}${appPath(app, target.path)}${more}`,
  );
  if (app.cors) {
    lines.push(
      `  cors: ${describeCors(app.cors)}${method === 'OPTIONS' ? '; a preflight (Origin and Access-Control-Request-Method) is answered by Gatehouse (204) and never forwarded; the rules decide any other OPTIONS' : ''}`,
    );
  }
  app.rules.forEach((r) => {
    const methodOk = !r.methods || r.methods.has(method);
    const pathOk = r.regex.test(target.path);
    const fromOk = !r.from || r.from.has(ip);
    const mark = r === rule ? '→' : ' ';
    const why = !pathOk
      ? 'path does not match'
      : !methodOk
        ? `method ${method} not in [${[...r.methods!].join(', ')}]`
        : !fromOk
          ? ip
            ? `client ${ip} not in from`
            : 'only for clients in from (give --from ADDRESS)'
          : 'matches';
    const from = r.from ? ` from [${r.from.entries.join(', ')}]` : '';
    lines.push(
      `  ${mark} rule ${r.index}: ${r.path}${r.methods ? ` [${[...r.methods].join(',')}]` : ''}${from} → ${r.access}: ${why}`,
    );
  });
  if (rule === app.fallback) lines.push(`  → no rule matches; default: ${rule.access}`);
  const decision =
    rule.access === 'public'
      ? 'public: forwarded without sign-in'
      : rule.access === 'deny'
        ? 'denied: 403 for everyone'
        : `sign-in required${rule.allow ? `, then only ${describeAllow(rule.allow)}` : ''}`;
  lines.push(`  decision: ${decision}`);
  if (rule.rateLimit && rule.access !== 'deny')
    lines.push(
      `  rate limit: ${rule.rateLimit.requests} requests per ${formatDuration(rule.rateLimit.perMs)} for each user (each client address when nobody is signed in), then 429${rule.rateLimit.headers ? '; the answers say what is left (RateLimit-Policy, RateLimit)' : ''}`,
    );
  if (rule.timeouts && rule.access !== 'deny')
    lines.push(
      `  timeouts: ${[rule.timeouts.response && `the app's answer within ${formatDuration(rule.timeouts.response)}`, rule.timeouts.idle && `pauses of at most ${formatDuration(rule.timeouts.idle)}`].filter(Boolean).join(', ')} (the rule's own)`,
    );
  return lines.join('\n');
}

function describeAllow(a: Allow): string {
  const demands = [
    a.providers && `signed in through ${a.providers.join(' or ')} (allow.providers)`,
    a.mfa && 'with a second factor in the session (allow.mfa)',
  ].filter(Boolean);
  if (!a.lists) return demands.join(', ');
  const parts = [];
  if (a.emails.size) parts.push(`emails ${[...a.emails].join(', ')}`);
  if (a.domains.size) parts.push(`domains ${[...a.domains].join(', ')}`);
  if (a.groups.size) parts.push(`groups ${[...a.groups].join(', ')}`);
  return [parts.join(' or ') || 'nobody', ...demands].join(', ');
}
