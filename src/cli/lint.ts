import { lintNetwork } from '../server/lint.ts';
import { lintWorkers } from '../server/workers.ts';
import { lintOAuth } from '../oauth/lint.ts';
import { lintEmail } from '../mail/lint.ts';
import { lintProviders } from '../providers/lint.ts';
import { lintMfa } from '../mfa/lint.ts';
import { appsOf } from '../sites/index.ts';
import { isLoopbackHost } from '../http/loopback.ts';
import { headerNames, relaysTokens } from '../config/headers.ts';
import { type AppConfig, type Config, upstreamList } from '../config/schema.ts';
import type { Warning } from '../config/warning.ts';

/**
 * Mistakes that validate but will hurt: printed by `gatehouse check` and logged at start.
 * Each names the key to change.
 */
export function lintConfig(config: Config): Warning[] {
  const w: Warning[] = [];
  const publicUrl = new URL(config.publicUrl);
  w.push(...lintNetwork(config));
  if (!config.secrets.key) {
    w.push({
      key: 'secrets.key',
      message:
        'no master key configured: one is generated and kept in the store, next to the data it protects. For production set secrets.key from the environment (openssl rand -base64 32).',
    });
  }
  if (config.accounts.registration === 'open') {
    const unverified = !config.email
      ? 'open registration without email verification: anyone can sign up with any address'
      : !config.accounts.requireVerifiedEmail
        ? 'open registration: anyone can sign up with any address and use the apps before verifying it (accounts.requireVerifiedEmail: true stops that)'
        : 'open registration';
    w.push({
      key: 'accounts.registration',
      message: `${unverified}, and the sign-up form tells whether an address is taken. Close it (registration: closed, or invite) where that matters.`,
    });
  }
  if (config.tokens.keys.publishBefore < 30_000) {
    w.push({
      key: 'tokens.keys.publishBefore',
      message:
        "under 30s: JWKS clients that refetch on an unknown kid at most every 30 s (jose's default, and gatehouse/verify) may reject assertions for a while after each rotation.",
    });
  }
  appsOf(config).forEach((app, a) => {
    const base = config.apps ? `apps[${a}]` : '';
    if (app.headers.assertion === false && !app.headers.assertionBearer) {
      w.push({
        key: `${base ? `${base}.` : ''}headers.assertion`,
        message: `app "${app.name}" gets no signed assertion, only ${headerNames(app.headers).id}: anyone who can reach it past Gatehouse can claim to be anyone. Keep it unreachable except through Gatehouse.`,
      });
    }
    if (app.headers.email !== false && app.headers.unverifiedEmail) {
      w.push({
        key: `${base ? `${base}.` : ''}headers.unverifiedEmail`,
        message: `app "${app.name}" gets addresses nobody has verified: whoever registers admin@example.com first is presented as admin@example.com. Only for an app that never maps an address to an account or a permission; otherwise remove unverifiedEmail (the app then gets verified addresses only, and email_verified: false for the rest).`,
      });
    } else if (app.headers.email !== false && !config.email && config.accounts.registration === 'open') {
      w.push({
        key: `${base ? `${base}.` : ''}headers.email`,
        message: `app "${app.name}" gets only verified addresses, and without email: users who register with a password can never verify theirs, so it gets no address for them (provider sign-ins and operator-added users have one).`,
      });
    }
    w.push(...lintHeaders(app, base ? `${base}.` : ''));
    if (app.cors?.credentials) {
      const plain = app.cors.origins.filter((o) => {
        const u = new URL(o);
        return u.protocol === 'http:' && !isLoopbackHost(u.hostname);
      });
      if (plain.length)
        w.push({
          key: `${base ? `${base}.` : ''}cors.origins`,
          message: `${plain.join(', ')}: a page served over plain http can be changed on its way to the browser, and with cors.credentials: true it acts as the signed-in user towards app "${app.name}". List https origins.`,
        });
    }
    app.routes.forEach((r, i) => {
      const key = `${base ? `${base}.` : ''}routes[${i}].path`;
      if (/\/\/|\/\.\.?(\/|$)|;|%2f|%5c/i.test(r.path)) {
        w.push({
          key,
          message: `"${r.path}" can never match: paths are normalized ("//", "." and ".." resolved; ";" and encoded slashes refused) before rules are applied.`,
        });
      }
      if (r.from && config.trustedProxies.length === 0) {
        w.push({
          key: `${key.replace(/\.path$/, '')}.from`,
          message:
            "matches by client address, and no trustedProxies are set: the address is the connection's. Behind a proxy or load balancer every request comes from its address, and this rule meets all of them or none; list the proxy in trustedProxies.",
        });
      }
      if (r.access === 'public' && /^\/\*\*$/.test(r.path) && !r.methods && !r.from) {
        w.push({ key, message: 'every path is public: Gatehouse protects nothing in this app.' });
      }
      if (r.allow?.mfa && config.accounts.mfa === 'off') {
        w.push({
          key: `${key.replace(/\.path$/, '')}.allow.mfa`,
          message:
            'asks for a second factor while accounts.mfa is off: nobody can add one, so only provider sign-ins that did MFA get in.',
        });
      }
      const listed = r.allow && (r.allow.groups || r.allow.emails || r.allow.domains);
      if (
        r.allow &&
        (listed || (!r.allow.mfa && !r.allow.providers)) &&
        !r.allow.groups?.length &&
        !r.allow.emails?.length &&
        !r.allow.domains?.length
      ) {
        w.push({ key: `${key.replace(/\.path$/, '')}.allow`, message: 'an empty allow-list admits nobody.' });
      }
    });
    const upstreamKey = base ? `${base}.upstream` : 'upstream';
    const several = typeof app.upstream !== 'string';
    const urls = upstreamList(app.upstream);
    urls.forEach((url, u) => {
      const upstream = new URL(url);
      const key = several ? `${upstreamKey}[${u}]` : upstreamKey;
      if (upstream.host === publicUrl.host) {
        w.push({ key, message: 'the upstream is Gatehouse itself: requests would loop.' });
      } else if (isOwnListener(upstream, config.listen)) {
        w.push({
          key,
          message: `the upstream is Gatehouse itself (listen.port ${config.listen.port} on this machine): requests would loop.`,
        });
      }
    });
    if (app.affinity !== 'none' && urls.length === 1)
      w.push({
        key: base ? `${base}.affinity` : 'affinity',
        message: 'affinity picks among several replicas (upstream: [url, url]); with one upstream it does nothing.',
      });
    const hosts = new Set(urls.map((u) => new URL(u).hostname));
    if (hosts.size > 1 && urls[0]!.startsWith('https:') && !app.upstreamTls?.serverName)
      w.push({
        key: upstreamKey,
        message: `https replicas on different hosts are all sent the first one's name (${new URL(urls[0]!).hostname}) as Host and SNI, and their certificates are checked against it: each must be valid for that name, or set upstreamTls.serverName to the name they share.`,
      });
  });
  w.push(...lintProviders(config));
  w.push(...lintOAuth(config));
  w.push(...lintEmail(config));
  if (config.forwardAuth.cacheFor > 0) {
    const n = config.forwardAuth.cacheFor / 1000;
    w.push({
      key: 'forwardAuth.cacheFor',
      message: `a proxy that caches /.auth/check answers (examples/nginx-forward-auth-cached.conf) lets a revoked session, a disabled user or removed groups through for up to ${n}s: logout, \`gatehouse sessions revoke\` and \`gatehouse users disable\` take effect there after up to ${n}s.`,
    });
  }
  w.push(...lintWorkers(config));
  w.push(...lintOperations(config));
  w.push(...lintMfa(config));
  return w;
}

/** Drains and outages (docs/operations.md). */
function lintOperations(config: Config): Warning[] {
  const w: Warning[] = [];
  const { drain, drainDelay } = config.listen.timeouts;
  if (drainDelay + drain > 30_000)
    w.push({
      key: 'listen.timeouts.drainDelay',
      message: `drainDelay + drain is ${Math.round((drainDelay + drain) / 1000)}s: an orchestrator that kills after 30 s (Kubernetes' default terminationGracePeriodSeconds, systemd's TimeoutStopSec is 90 s) cuts in-flight requests; give it more time or shorten these.`,
    });
  if (drainDelay === 0 && config.store.type === 'postgres')
    w.push({
      key: 'listen.timeouts.drainDelay',
      message:
        'several nodes (PostgreSQL) and no drainDelay: on SIGTERM the listener closes at once, before a load balancer that probes /.auth/ready has seen it turn 503; set drainDelay to its probe interval times its failure threshold (docs/operations.md, "Rolling restarts").',
    });
  return w;
}

/** headers: (config/headers.ts) settings that validate but do not do what they seem to. */
function lintHeaders(app: AppConfig, at: string): Warning[] {
  const w: Warning[] = [];
  const names = headerNames(app.headers);
  if (names.assertionBearer?.toLowerCase() === 'authorization')
    w.push({
      key: `${at}headers.assertionBearer`,
      message: `app "${app.name}" gets the assertion in Authorization, which replaces whatever Authorization a client sends: the app can take no token of its own there (a CLI's Gatehouse token still works).`,
    });
  if (app.headers.accessToken !== undefined && !relaysTokens(app))
    w.push({
      key: `${at}headers.accessToken`,
      message: `app "${app.name}" relays no provider token (no tokenRelay on it or its routes): headers.accessToken has no effect.`,
    });
  return w;
}

/** The upstream names Gatehouse's own listener: its port on a loopback address or on listen.host. */
function isOwnListener(upstream: URL, listen: Config['listen']): boolean {
  const port = Number(upstream.port || (upstream.protocol === 'https:' ? 443 : 80));
  if (port !== listen.port) return false;
  const host = upstream.hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || host === listen.host;
}
