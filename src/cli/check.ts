import { ConfigError, loadConfig } from '../config/load.ts';
import { lintConfig } from './lint.ts';
import type { Config } from '../config/schema.ts';
import { normalizeTarget } from '../http/target.ts';
import { providerRegistrations } from '../providers/lint.ts';
import { matchRule } from '../policy/rules.ts';
import { isBelow } from '../pipeline/decide.ts';
import { appFor, buildSites, hostKey } from '../sites/index.ts';
import { JWKS_PATH } from '../pipeline/route.ts';
import { err, out, UsageError } from './io.ts';

/** `gatehouse check`: validate, warn, and optionally explain how a URL is decided. */
export async function check(file: string, flags: { explain?: string; method?: string }): Promise<number> {
  let config: Config;
  try {
    config = loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      err(e.message);
      return 2;
    }
    throw e;
  }
  const findings = lintConfig(config);
  for (const f of findings) err(`${f.severity ?? 'warning'}: ${f.key}: ${f.message}`);
  const errors = findings.filter((f) => f.severity === 'error').length;
  const status = errors ? 2 : 0;
  if (flags.explain) {
    out(explain(config, flags.explain, (flags.method ?? 'GET').toUpperCase()));
    return status;
  }
  const counts = [count(errors, 'error'), count(findings.length - errors, 'warning')].filter(Boolean).join(', ');
  const sites = buildSites(config);
  try {
    out(`${file}: ${errors ? 'not OK' : 'OK'}${counts ? ` (${counts})` : ''}`);
    for (const site of sites.values()) {
      for (const app of site.apps) {
        out(
          `  ${site.origin}${app.pathPrefix || site.home} → ${app.upstream.url.href}  app "${app.name}", ${app.rules.length} rule${app.rules.length === 1 ? '' : 's'}, default ${app.fallback.access}`,
        );
      }
    }
    for (const line of providerRegistrations(config)) out(line);
  } finally {
    await Promise.all([...sites.values()].flatMap((s) => s.apps.map((a) => a.upstream.close())));
  }
  return status;
}

function count(n: number, noun: string): string {
  return n ? `${n} ${noun}${n === 1 ? '' : 's'}` : '';
}

export function explain(config: Config, url: string, method: string): string {
  let u: URL;
  try {
    u = new URL(url, config.publicUrl);
  } catch {
    throw new UsageError(`"${url}" is not a URL`);
  }
  const sites = buildSites(config);
  try {
    const secure = new URL(config.publicUrl).protocol === 'https:';
    const site = sites.get(hostKey(u.host, secure));
    if (!site) return `${u.host}: no site answers for this host → 421 (configured: ${[...sites.keys()].join(', ')})`;
    const rawPath = url.startsWith('/') ? url : url.slice(url.indexOf(u.host) + u.host.length) || '/';
    const target = normalizeTarget(rawPath.split('#')[0]!);
    if (!target.ok) return `${rawPath}: refused with 400 (${target.reason})`;
    const lines = [
      `${method} ${site.origin}${target.path}${target.path !== rawPath.split('?')[0] ? `   (normalized from ${rawPath.split('?')[0]})` : ''}`,
    ];
    if (site.base && !isBelow(target.path, site.base, false))
      return [...lines, `  outside publicUrl's path ${site.home} → 404`].join('\n');
    const own = site.base + config.authPrefix;
    if (isBelow(target.path, own, true))
      return [...lines, `  Gatehouse's own route (${own}); never forwarded`].join('\n');
    if (target.path === site.base + JWKS_PATH)
      return [...lines, "  Gatehouse's signing keys (JWKS), on every site; never forwarded"].join('\n');
    const app = appFor(site, target.path);
    if (!app) return [...lines, '  no app serves this path → 404'].join('\n');
    lines.push(`  app "${app.name}" → ${app.upstream.url.origin}${app.upstream.basePath}${target.path}`);
    const rule = matchRule(app.rules, app.fallback, method, target.path);
    app.rules.forEach((r) => {
      const methodOk = !r.methods || r.methods.has(method);
      const pathOk = r.regex.test(target.path);
      const mark = r === rule ? '→' : ' ';
      const why = !pathOk
        ? 'path does not match'
        : !methodOk
          ? `method ${method} not in [${[...r.methods!].join(', ')}]`
          : 'matches';
      lines.push(
        `  ${mark} rule ${r.index}: ${r.path}${r.methods ? ` [${[...r.methods].join(',')}]` : ''} → ${r.access}: ${why}`,
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
    return lines.join('\n');
  } finally {
    void Promise.all([...sites.values()].flatMap((s) => s.apps.map((a) => a.upstream.close())));
  }
}

function describeAllow(a: {
  emails: ReadonlySet<string>;
  domains: ReadonlySet<string>;
  groups: ReadonlySet<string>;
}): string {
  const parts = [];
  if (a.emails.size) parts.push(`emails ${[...a.emails].join(', ')}`);
  if (a.domains.size) parts.push(`domains ${[...a.domains].join(', ')}`);
  if (a.groups.size) parts.push(`groups ${[...a.groups].join(', ')}`);
  return parts.join(' or ') || 'nobody';
}
