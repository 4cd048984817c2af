import { isIP } from 'node:net';
import { formatDuration } from '../config/duration.ts';
import { formatSize } from '../config/size.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { eventTypesOf } from '../events/index.ts';
import { describeCors } from '../http/cors.ts';
import { explain as explainUrl } from '../pipeline/explain.ts';
import { Routes } from '../pipeline/route.ts';
import { providerRegistrations } from '../providers/lint.ts';
import { routeShapes } from '../server/routes.ts';
import { type App, basePath, buildSites } from '../sites/index.ts';
import { err, out, UsageError } from './io.ts';
import { lintConfig } from './lint.ts';

/**
 * `gatehouse check`: validate, warn, and optionally explain how a URL is decided (--explain) or
 * reach every service the config names (--connect: exit 1 when one fails).
 */
export async function check(
  file: string,
  flags: { explain?: string; method?: string; from?: string; connect?: boolean },
): Promise<number> {
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
    out(explain(config, flags.explain, (flags.method ?? 'GET').toUpperCase(), flags.from));
    return status;
  }
  const counts = [count(errors, 'error'), count(findings.length - errors, 'warning')].filter(Boolean).join(', ');
  out(`${file}: ${errors ? 'not OK' : 'OK'}${counts ? ` (${counts})` : ''}`);
  for (const site of buildSites(config).values()) {
    const b = site.branding;
    if (b && (b.logo || b.color || b.links?.length))
      out(
        `  ${site.origin} pages: ${[b.logo && `logo ${b.logo}`, b.color && `colour ${b.color}`, b.links?.length && `links ${b.links.map((l) => l.text).join(', ')}`].filter(Boolean).join(', ')} (${b.at})`,
      );
    if (site.hsts) out(`  ${site.origin} every response: Strict-Transport-Security: ${site.hsts} (hsts)`);
    if (site.sso)
      out(
        `  ${site.origin} sign-in: single sign-on from ${new URL(config.publicUrl).origin} (sso); its sessions end with the one there`,
      );
    else if (!site.apps.length)
      out(`  ${site.origin} sign-in and account pages only (no app): where the sso hosts sign in`);
    for (const app of site.apps) {
      out(
        `  ${site.origin}${app.pathPrefix || site.home} → ${app.upstream.urls.map((u) => u.href).join(' | ')}${app.stripPrefix ? ` (without ${app.pathPrefix})` : ''}  app "${app.name}", ${app.rules.length} rule${app.rules.length === 1 ? '' : 's'}, default ${app.fallback.access}`,
      );
      out(`    ${identityLine(app)}`);
      const tls = app.upstream.tls;
      if (tls)
        out(
          `    upstream TLS: ${[tls.ca ? `the app's certificate must chain to ${tls.ca}` : "the app's certificate must chain to a system CA", tls.serverName ? `be valid for ${tls.serverName}` : '', tls.cert ? `Gatehouse presents ${tls.cert}` : 'no client certificate'].filter(Boolean).join(', ')}; re-read on SIGHUP`,
        );
      if (app.maintenance)
        out(
          `    CLOSED for maintenance: 503 to everyone${app.maintenance.allow?.lists ? ' but the users maintenance.allow names' : ''}`,
        );
      if (app.requestHeaders)
        out(
          `    request headers: ${app.requestHeaders.filter((_, i) => i % 2 === 0).join(', ')} set on every request (values not shown); clients' copies removed`,
        );
      if (app.responseHeaders)
        out(`    response headers where the app sends none: ${app.responseHeaders.map(([n]) => n).join(', ')}`);
      if (app.maxRequestBody !== null)
        out(`    request bodies: at most ${formatSize(app.maxRequestBody)}; a larger one is refused with 413`);
      if (app.affinity !== 'none')
        out(
          `    affinity: ${app.affinity === 'user' ? "each signed-in user's requests, and anyone else's by client address," : "each client address's requests"} always to the same replica`,
        );
      const health = app.upstream.health;
      if (health)
        out(
          `    health checks: GET ${health.path} every ${formatDuration(health.interval)} (timeout ${formatDuration(health.timeout)}), passing with ${health.status ? `HTTP ${health.status.join(' or ')}` : 'a 2xx or 3xx'}${health.body === undefined ? '' : ` and a body with ${JSON.stringify(health.body)}`}; ${health.unhealthyAfter} failed in a row take a replica out, ${health.healthyAfter} passed put it back${app.upstream.urls.length === 1 ? '; with one upstream, requests go to it in any case' : ''}`,
        );
      if (app.cors) out(`    cors: ${describeCors(app.cors)}; preflights answered by Gatehouse`);
      if (app.events) {
        const sent = eventTypesOf(app);
        const noAddress = app.events.types.has('email_changed') && !sent.includes('email_changed');
        out(
          `    events: ${sent.join(', ') || 'none'} POSTed to ${app.events.url.href} as signed Security Event Tokens${noAddress ? '; email_changed is not sent: the app gets no addresses (headers.email)' : ''}`,
        );
      }
      const services = config.tokens.clients.filter((c) => c.apps?.includes(app.name));
      if (services.length) out(`    service clients (client_credentials): ${services.map(serviceClient).join(', ')}`);
    }
  }
  if (config.tokens.bearerHeader)
    out(
      `  Gatehouse tokens: Authorization or ${config.tokens.bearerHeader} (tokens.bearerHeader: decides alone when sent, removed before the app, Authorization then the app's)`,
    );
  for (const line of providerRegistrations(config)) out(line);
  if (!flags.connect) return status;
  // --connect: every service the config names, reached from here (probe.ts).
  const results = await (await import('./probe.ts')).probeAll(config);
  out('connections:');
  for (const r of results) out(`  ${r.ok ? 'ok  ' : 'FAIL'}  ${r.what}: ${r.detail}`);
  const failed = results.filter((r) => !r.ok).length;
  if (failed) err(`${count(failed, 'connection')} failed`);
  return status || (failed ? 1 : 0);
}

/** A service client as `check` prints it: its user id, its groups, and the workload tokens it takes for a secret. */
function serviceClient(c: Config['tokens']['clients'][number]): string {
  const about = [
    ...(c.groups.length ? [`groups ${c.groups.join(', ')}`] : []),
    ...(c.federated ? [`tokens of ${c.federated.issuer} for ${c.federated.subject}`] : []),
  ];
  return `client:${c.id}${about.length ? ` (${about.join('; ')})` : ''}`;
}

/** What the app learns and under which names (config/headers.ts), as `check` prints it. */
function identityLine(app: App): string {
  const h = app.headers;
  const sent = [`${h.id} (user id)`];
  if (h.email) sent.push(`${h.email} (${h.unverifiedEmail ? 'email, verified or not' : 'verified email'})`);
  if (h.name) sent.push(`${h.name} (name)`);
  if (h.groups) sent.push(`${h.groups} (groups)`);
  if (h.assertion) sent.push(`${h.assertion} (assertion)`);
  if (h.assertionBearer) sent.push(`${h.assertionBearer} (Bearer assertion)`);
  const relay =
    app.tokenRelay || app.rules.some((r) => typeof r.tokenRelay === 'string')
      ? `; a relayed token in ${h.accessToken}`
      : '';
  return `headers: ${sent.join(', ')}${relay}; client copies removed`;
}

function count(n: number, noun: string): string {
  return n ? `${n} ${noun}${n === 1 ? '' : 's'}` : '';
}

export function explain(config: Config, url: string, method: string, from?: string): string {
  if (from !== undefined && !isIP(from)) throw new UsageError(`--from: "${from}" is not an IP address`);
  let u: URL;
  try {
    u = new URL(url, config.publicUrl);
  } catch {
    throw new UsageError(`"${url}" is not a URL`);
  }
  const base = basePath(config.publicUrl);
  const routes = new Routes(buildSites(config), routeShapes(), { base, prefix: base + config.authPrefix });
  return explainUrl(routes, url, u, method, from);
}
