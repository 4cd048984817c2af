import type { Warning } from '../config/warning.ts';
import type { Config } from '../config/schema.ts';
import { isLoopbackHost } from '../http/loopback.ts';
import { BrandError, CARD, contrast, makeLook } from '../pages/index.ts';
import { expiryWarning } from '../http/tls-files.ts';
import { loadUpstreamTls } from '../proxy/tls.ts';
import { appsOf, basePath, buildSites } from '../sites/index.ts';
import { certificateWarnings, loadTls, TlsError } from './tls.ts';

/**
 * `gatehouse check` (and the start-up log) about how Gatehouse meets the network: the mistakes
 * that would otherwise show up as a login loop, a refused certificate or clear-text passwords.
 */
export function lintNetwork(config: Config, now = Date.now()): Warning[] {
  const w: Warning[] = [];
  const publicUrl = new URL(config.publicUrl);
  const https = publicUrl.protocol === 'https:';
  const localHost = isLoopbackHost(publicUrl.hostname);
  const tls = config.listen.tls;
  const everywhere = config.listen.host === '0.0.0.0' || config.listen.host === '::';
  const reachable = !isLoopbackHost(config.listen.host);

  if (!https && !localHost) {
    w.push({
      key: 'publicUrl',
      message: `${publicUrl.origin} is plain http on a non-local host${reachable ? `, and Gatehouse listens on ${config.listen.host}` : ''}: passwords and session cookies cross the network in clear. Use https: TLS at a proxy in front (listed in trustedProxies), or listen.tls.`,
    });
  }
  if (!https && localHost && everywhere) {
    w.push({
      key: 'listen.host',
      message: `listening on all interfaces while publicUrl is ${publicUrl.origin}: requests arriving under another host name are refused (421).`,
    });
  }
  // This listener is the only way in, and it does not serve publicUrl's scheme: every protected
  // page shows the explanation instead of the login page (Diagnosis.unreachable).
  const noProxy = config.trustedProxies.length === 0;
  if (https && !tls && noProxy) {
    w.push({
      key: 'trustedProxies',
      severity: 'error',
      message:
        'publicUrl is https, but Gatehouse serves plain http (no listen.tls) and trusts no proxy to say the browser used https: no sign-in can work (every protected page shows an explanation instead of the login page). If TLS ends at a proxy in front, list it in trustedProxies (and have it send X-Forwarded-Proto); if browsers connect directly, set listen.tls.',
    });
  }
  for (const [i, p] of config.trustedProxies.entries()) {
    if (/\/0$/.test(p)) {
      w.push({
        key: `trustedProxies[${i}]`,
        message: `"${p}" trusts every address: any client can then claim any IP, scheme and host in forwarding headers, which defeats rate limits.`,
      });
    }
  }
  if (tls) {
    if (!https)
      w.push({
        key: 'publicUrl',
        ...(noProxy ? { severity: 'error' as const } : {}),
        message: `listen.tls is set but publicUrl is ${publicUrl.origin}: browsers would be sent to plain http${noProxy ? ', which this port does not serve: no sign-in can work' : ''}. Set publicUrl to https://${publicUrl.host}${publicUrl.pathname}.`,
      });
    try {
      const pair = loadTls(tls);
      for (const m of certificateWarnings(pair.leaf, publicUrl.hostname, now))
        w.push({ key: 'listen.tls.cert', message: m });
    } catch (e) {
      if (!(e instanceof TlsError)) throw e;
      w.push(wontStart(e));
    }
  }
  for (const site of buildSites(config).values()) {
    const b = site.branding;
    if (b) {
      try {
        makeLook(b, b.at, '');
      } catch (e) {
        if (!(e instanceof BrandError)) throw e;
        w.push(wontStart(e));
      }
      const ratio = b.color ? contrast(b.color, CARD.light) : 21;
      if (ratio < 4.5)
        w.push({
          key: `${b.at}.color`,
          message: `links in ${b.color} on the white page have a contrast of ${ratio.toFixed(1)}:1, below the 4.5:1 WCAG asks of text: pick a darker colour (buttons take white or black text, whichever reads better; dark mode lightens it by itself).`,
        });
    }
    for (const app of site.apps) {
      const files = app.upstream.tls;
      if (!files) continue;
      try {
        const { client, authorities } = loadUpstreamTls(files);
        const late = client && expiryWarning(client, 'the client certificate', now);
        if (late)
          w.push({
            key: `${files.at}.cert`,
            message: `${late}: an app that asks for it refuses Gatehouse once it has expired.`,
          });
        for (const ca of authorities) {
          const m = expiryWarning(ca, `the CA certificate ${ca.subject.replace(/\n/g, ', ')}`, now);
          if (m) w.push({ key: `${files.at}.ca`, message: `${m}: the app's certificate cannot pass with it.` });
        }
      } catch (e) {
        if (!(e instanceof TlsError)) throw e;
        w.push(wontStart(e));
      }
    }
  }
  if (config.metrics) {
    const at = config.metrics.listen.lastIndexOf(':');
    const host = config.metrics.listen.slice(0, at);
    const port = Number(config.metrics.listen.slice(at + 1));
    if (!isLoopbackHost(host))
      w.push({
        key: 'metrics.listen',
        message: `metrics are served on ${host}, not a loopback address: anyone who can reach it reads request rates, app names and the version. Keep it on a private network (firewall) or 127.0.0.1 with a local scraper.`,
      });
    const metricsEverywhere = host === '0.0.0.0' || host === '[::]' || host === '::';
    if (port !== 0 && port === config.listen.port && (host === config.listen.host || everywhere || metricsEverywhere))
      w.push({
        key: 'metrics.listen',
        severity: 'error',
        message: `metrics.listen is Gatehouse's own listener (port ${port}): Gatehouse will not start. Use another port, such as 9464.`,
      });
  }
  const base = basePath(config.publicUrl);
  if (base) {
    const below = (p: string) => p === base || p.startsWith(`${base}/`);
    // Whether a glob can match anything below the base: its literal start and the base agree.
    const reaches = (glob: string, caseSensitive: boolean) => {
      const star = glob.indexOf('*');
      const fold = (x: string) => (caseSensitive ? x : x.toLowerCase());
      const lit = fold(star === -1 ? glob : glob.slice(0, star));
      const b = fold(base);
      return lit === b || lit.startsWith(`${b}/`) || `${b}/`.startsWith(lit);
    };
    appsOf(config).forEach((app, a) => {
      const at = config.apps ? `apps[${a}].` : '';
      if (app.pathPrefix && !below(app.pathPrefix))
        w.push({
          key: `${at}pathPrefix`,
          message: `"${app.pathPrefix}" is outside publicUrl's path ${base}/: Gatehouse serves nothing there.`,
        });
      app.routes.forEach((r, i) => {
        if (!reaches(r.path, app.caseSensitivePaths)) {
          w.push({
            key: `${at}routes[${i}].path`,
            message: `"${r.path}" is outside publicUrl's path ${base}/ and can never match: rules match the full path, ${base} included (e.g. "${base}${r.path}").`,
          });
        }
      });
    });
  }
  return w;
}

/** A file named by the config that cannot be used (its error names the key): serve would refuse to start. */
function wontStart(e: TlsError | BrandError): Warning {
  return { key: e.key, severity: 'error', message: `${e.message.slice(e.key.length + 2)}: Gatehouse will not start.` };
}
