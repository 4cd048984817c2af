/**
 * What the bench measures, as data. To add a scenario:
 *   1. if it needs Gatehouse configured differently, add a GatehouseVariant: run.ts starts one
 *      Gatehouse process per variant, all on the Gatehouse core, each with its own store;
 *   2. add a Scenario that names the variant (or 'direct'), a path and whether it is signed in;
 *   3. add the ratios and latency targets that compare it with the others.
 * The table, the JSON summary and the target checks pick them up from here.
 */

export interface GatehouseVariant {
  id: string;
  /** Merged over the base config (see run.ts, gatehouseConfig): anything gatehouse.yaml takes. */
  config: Record<string, unknown>;
  /**
   * 'nginx-cached': the load goes to an nginx running examples/nginx-forward-auth-cached.conf
   * (publicUrl is nginx's address; nginx asks this Gatehouse and proxies to the app itself).
   */
  front?: 'nginx-cached';
  /**
   * A config key this variant needs (a dotted path set in `config`). When this build's schema
   * does not take it, the variant's scenarios are skipped with a note instead of failing.
   */
  requires?: string;
  /** Node flags of this Gatehouse process (before the script), beside --node-flags. */
  nodeFlags?: string[];
  /** Another checkout to run Gatehouse from (--compare-with); default: this one. */
  root?: string;
}

export interface Scenario {
  id: string;
  label: string;
  /**
   * 'direct' = straight to the app; 'floor' = through bench/floor-proxy.ts (the bare Node
   * proxy); 'floor-dispatch' = the same calling undici's dispatch(); 'nginx' = through nginx
   * without auth; otherwise the id of a GatehouseVariant.
   */
  via: 'direct' | 'floor' | 'floor-dispatch' | 'nginx' | string;
  /** Public paths are under /open/ (rule access: public); everything else needs a session. */
  path: string;
  /** Sends a valid session cookie (made by registering through POST /.auth/register). */
  signedIn: boolean;
  /** Whether the app must receive X-Gatehouse-Assertion (checked before measuring); default: signedIn. */
  assertion?: boolean;
  /** Run only when asked for (named in --only). */
  optional?: boolean;
}

export interface RatioTarget {
  num: string;
  den: string;
  label: string;
  /** Saturation requests/s of num divided by den must be at least this. */
  min?: number;
}

export interface LatencyTarget {
  scenario: string;
  baseline: string;
  /** p99 at the fixed rate may exceed the baseline's by at most this. */
  maxExtraMs: number;
}

export const VARIANTS: GatehouseVariant[] = [
  // As users run it: the signed assertion is on by default.
  { id: 'gatehouse', config: {} },
  { id: 'no-assertion', config: { headers: { assertion: false } } },
  // Prometheus metrics on (their own listener, port 0: nothing scrapes during the run).
  { id: 'metrics', config: { metrics: { listen: '127.0.0.1:0' } } },
  // nginx carries the bytes; Gatehouse is asked by auth_request and nginx keeps its answers.
  {
    id: 'nginx-cached',
    config: { trustedProxies: ['loopback'], forwardAuth: { cacheFor: '5s' } },
    front: 'nginx-cached',
    requires: 'forwardAuth.cacheFor',
  },
  // What the request log line costs: the same with log level warn (no line per request).
  { id: 'quiet', config: { log: { level: 'warn' } } },
  // The same at level info with request lines for errors only (log.requests): the events stay.
  { id: 'errors-only', config: { log: { requests: 'errors' } }, requires: 'log.requests' },
  // Several processes on one port (issue 13 item 1). On a 2-core machine with the load
  // generator on the other core this cannot show scaling: both workers share Gatehouse's core.
  { id: 'workers', config: { listen: { workers: 2 } }, requires: 'listen.workers' },
];

export const SCENARIOS: Scenario[] = [
  { id: 'a', label: 'direct to the app', via: 'direct', path: '/open/item', signedIn: false },
  { id: 'z', label: 'bare Node proxy (floor)', via: 'floor', path: '/open/item', signedIn: false },
  {
    id: 'y',
    label: 'bare Node proxy, undici dispatch()',
    via: 'floor-dispatch',
    path: '/open/item',
    signedIn: false,
    optional: true,
  },
  { id: 'n', label: 'nginx, no auth', via: 'nginx', path: '/open/item', signedIn: false },
  { id: 'b', label: 'Gatehouse, public route', via: 'gatehouse', path: '/open/item', signedIn: false },
  { id: 'c', label: 'Gatehouse, valid session (assertion on)', via: 'gatehouse', path: '/home/item', signedIn: true },
  {
    id: 'd',
    label: 'Gatehouse, valid session, assertion off',
    via: 'no-assertion',
    path: '/home/item',
    signedIn: true,
    assertion: false,
  },
  { id: 'm', label: 'Gatehouse, valid session, metrics on', via: 'metrics', path: '/home/item', signedIn: true },
  {
    id: 'f',
    label: 'nginx + cached forward-auth, valid session',
    via: 'nginx-cached',
    path: '/home/item',
    signedIn: true,
  },
  {
    id: 'q',
    label: 'Gatehouse, valid session, log level warn',
    via: 'quiet',
    path: '/home/item',
    signedIn: true,
    optional: true,
  },
  {
    id: 'e',
    label: 'Gatehouse, valid session, log.requests: errors',
    via: 'errors-only',
    path: '/home/item',
    signedIn: true,
    optional: true,
  },
  { id: 'w', label: 'Gatehouse, listen.workers: 2, valid session', via: 'workers', path: '/home/item', signedIn: true },
];

export const RATIOS: RatioTarget[] = [
  { num: 'b', den: 'a', label: 'public route / direct' },
  { num: 'c', den: 'a', label: 'session / direct', min: 0.4 },
  { num: 'c', den: 'b', label: 'session / public route', min: 0.9 },
  { num: 'd', den: 'a', label: 'session without assertion / direct' },
  { num: 'c', den: 'd', label: 'assertion on / off (its cost)', min: 0.9 },
  { num: 'm', den: 'c', label: 'metrics on / off (their cost)', min: 0.97 },
  { num: 'z', den: 'a', label: 'bare Node proxy / direct (floor)' },
  { num: 'c', den: 'z', label: 'session / bare Node proxy', min: 0.9 },
  { num: 'c', den: 'y', label: 'session / bare Node proxy with dispatch()' },
  { num: 'n', den: 'a', label: 'nginx without auth / direct' },
  { num: 'f', den: 'n', label: 'nginx + cached forward-auth / nginx without auth', min: 0.8 },
  { num: 'w', den: 'c', label: 'two workers / one (one core for both here)' },
  { num: 'c', den: 'q', label: 'log level info / warn (what the request line costs)' },
  { num: 'e', den: 'z', label: 'session, request lines for errors only / bare Node proxy' },
];

export const LATENCY_TARGETS: LatencyTarget[] = [
  { scenario: 'b', baseline: 'a', maxExtraMs: 2 },
  { scenario: 'c', baseline: 'a', maxExtraMs: 2 },
];

/** For the report: what others measured the same way (from the issue). */
export const REFERENCES =
  'reference: nginx without auth ≈ 0.45× direct; Apache + mod_auth_openidc with a valid session ≈ 0.1× direct';
