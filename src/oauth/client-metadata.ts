import { lookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { Agent, request } from 'undici';
import { isLoopbackHost } from '../http/loopback.ts';

/**
 * Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document, used by the
 * MCP authorization spec): a client_id that is an https URL names a JSON document, served
 * there by the client's owner, with its name and redirect URIs. Fetching a URL an anonymous
 * caller chose is a server-side request forgery risk, so:
 *   - https only, a path, no query, fragment, credentials or dot segments;
 *   - the name must resolve to public addresses only, checked at connect time (no DNS
 *     rebinding between check and use); IP literals are checked the same way;
 *   - no redirects, 5 s for the whole exchange, 5 KiB at most, JSON only;
 *   - a fetch (not a document served from memory) is admitted per requester, by `admit`
 *     (tokens.rateLimits.clientDocumentsPerIp), and parallel requests for one URL share it.
 * Where Gatehouse itself runs on a loopback address (development, tests), http URLs on
 * loopback are accepted too, and only then.
 */

const MAX_BYTES = 5 * 1024;
const NON_PUBLIC = 'ERR_GATEHOUSE_NON_PUBLIC_ADDRESS';
const TIMEOUT_MS = 5000;

/**
 * IPv4 ranges that are not public (IANA's IPv4 special-purpose registry: private, shared,
 * loopback, link-local, protocol assignments, documentation, benchmarking, the deprecated 6to4
 * relay anycast, multicast, reserved and broadcast).
 */
const NOT_PUBLIC_V4 = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  NOT_PUBLIC_V4.addSubnet(net, bits, 'ipv4');

/**
 * IPv6: only global unicast (2000::/3) is public, which leaves out at once the unspecified and
 * loopback addresses, IPv4-compatible ::/96, IPv4-mapped ::ffff:0:0/96, IPv4-translated
 * ::ffff:0:0:0/96, the local-use NAT64 prefix 64:ff9b:1::/48, discard-only 100::/64, SRv6
 * 5f00::/16, ULA fc00::/7, link-local fe80::/10, site-local fec0::/10 and multicast ff00::/8.
 * Inside it, these are not public either: IETF protocol assignments 2001::/23 (Teredo 2001::/32,
 * whose client address is hidden in the last 32 bits, benchmarking, ORCHID, ...) and the
 * documentation prefixes. NAT64 64:ff9b::/96 and 6to4 2002::/16 reach the IPv4 address they
 * embed, so that address decides (EMBEDS_V4).
 */
const GLOBAL_V6 = new BlockList();
GLOBAL_V6.addSubnet('2000::', 3, 'ipv6');
const NOT_PUBLIC_V6 = new BlockList();
for (const [net, bits] of [
  ['2001::', 23],
  ['2001:db8::', 32],
  ['3fff::', 20],
] as const)
  NOT_PUBLIC_V6.addSubnet(net, bits, 'ipv6');
/** Prefixes whose addresses stand for an IPv4 address: [prefix, bits, 16-bit group where the IPv4 address starts]. */
const EMBEDS_V4 = [
  ['64:ff9b::', 96, 6],
  ['2002::', 16, 1],
] as const;
const LOOPBACK_V6 = new BlockList();
LOOPBACK_V6.addAddress('::1', 'ipv6');
const EMBEDDING = EMBEDS_V4.map(([net, bits, at]) => {
  const list = new BlockList();
  list.addSubnet(net, bits, 'ipv6');
  return { list, at };
});

/** The eight 16-bit groups of a valid IPv6 address (as isIP accepts it, without a zone). */
function ipv6Groups(address: string): number[] {
  let a = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (dotted) {
    const [b0, b1, b2, b3] = dotted.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, dotted.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => Number.parseInt(g, 16));
}

/**
 * Whether Gatehouse may connect to this address to fetch a document an anonymous caller named:
 * a public address, or (`allowLoopback`, where Gatehouse itself runs on loopback) 127.0.0.0/8
 * and ::1 themselves, never an address wrapped in another form (IPv4-mapped included).
 */
export function publicAddress(a: string, allowLoopback: boolean): boolean {
  const family = isIP(a);
  if (family === 4) return (allowLoopback && a.startsWith('127.')) || !NOT_PUBLIC_V4.check(a, 'ipv4');
  if (family !== 6 || a.includes('%')) return false;
  if (allowLoopback && LOOPBACK_V6.check(a, 'ipv6')) return true;
  if (!GLOBAL_V6.check(a, 'ipv6') && !EMBEDDING[0]!.list.check(a, 'ipv6')) return false;
  if (NOT_PUBLIC_V6.check(a, 'ipv6')) return false;
  for (const { list, at } of EMBEDDING) {
    if (!list.check(a, 'ipv6')) continue;
    const g = ipv6Groups(a);
    const v4 = `${g[at]! >> 8}.${g[at]! & 255}.${g[at + 1]! >> 8}.${g[at + 1]! & 255}`;
    return !NOT_PUBLIC_V4.check(v4, 'ipv4');
  }
  return true;
}

export class MetadataDocumentError extends Error {
  /** 400 for a document that cannot be used, 429 when the requester fetched too many. */
  readonly status: number;
  readonly retryAfterSeconds: number | undefined;
  constructor(message: string, o: { status?: number; retryAfterSeconds?: number } = {}) {
    super(message);
    this.status = o.status ?? 400;
    this.retryAfterSeconds = o.retryAfterSeconds;
  }
}

/** Whether a requester (a client IP) may make Gatehouse fetch one more document now. */
export type AdmitFetch = (requester: string) => Promise<{ ok: true } | { ok: false; retryAfterSeconds: number }>;

/** Why a client_id cannot be a metadata document URL, or undefined when it can. */
export function metadataUrlProblem(clientId: string, allowLoopback: boolean): string | undefined {
  let u: URL;
  try {
    u = new URL(clientId);
  } catch {
    return 'is not a URL';
  }
  if (u.protocol !== 'https:' && !(allowLoopback && u.protocol === 'http:' && isLoopbackHost(u.hostname)))
    return 'must be an https URL';
  if (u.username || u.password || u.search || clientId.includes('#'))
    return 'must not contain credentials, a query or a fragment';
  if (u.pathname === '/' || /\/\.\.?(\/|$)/.test(clientId.slice(u.origin.length)))
    return 'must have a path without "." or ".." segments';
  if (u.href !== clientId) return 'must be written in its normal form';
  return undefined;
}

export interface MetadataDocument {
  clientId: string;
  name: string | undefined;
  clientUri: string | undefined;
  redirectUris: string[];
  grantTypes: string[];
  scope: string | undefined;
  /** Until when the document may be used without fetching it again. */
  freshUntil: number;
}

export class MetadataDocuments {
  private readonly allowLoopback: boolean;
  private readonly agent: Agent;
  private readonly cache = new Map<string, MetadataDocument>();
  /** Fetches under way, by URL (removed when they settle). */
  private readonly inflight = new Map<string, Promise<MetadataDocument>>();
  private readonly now: () => number;
  private readonly admit: AdmitFetch | undefined;

  constructor(options: { allowLoopback: boolean; now: () => number; admit?: AdmitFetch }) {
    this.allowLoopback = options.allowLoopback;
    this.now = options.now;
    this.admit = options.admit;
    const allow = this.allowLoopback;
    this.agent = new Agent({
      connections: 8,
      connect: {
        timeout: TIMEOUT_MS,
        // Every address the name resolves to must be public: checked on the very addresses
        // the socket will use, so a second DNS answer cannot point somewhere else.
        lookup: (
          hostname: string,
          options: { all?: boolean },
          callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
        ) => {
          lookup(hostname, { all: true }, (err, addresses) => {
            if (err) return callback(err, []);
            const bad = addresses.find((a) => !publicAddress(a.address, allow));
            if (bad || addresses.length === 0)
              return callback(
                Object.assign(new Error(`${hostname} resolves to a non-public address`), { code: NON_PUBLIC }),
                [],
              );
            if (options.all) return callback(null, addresses);
            callback(null, addresses[0]!.address, addresses[0]!.family);
          });
        },
      },
    });
  }

  /**
   * The document for a client_id URL, from memory while fresh; throws MetadataDocumentError.
   * `requester` (the client IP) is what a fetch is counted against.
   */
  async get(clientId: string, requester?: string): Promise<MetadataDocument> {
    const cached = this.cache.get(clientId);
    if (cached && cached.freshUntil > this.now()) return cached;
    const pending = this.inflight.get(clientId);
    if (pending) return pending;
    if (this.admit && requester !== undefined) {
      const verdict = await this.admit(requester);
      if (!verdict.ok)
        throw new MetadataDocumentError(
          'too many client metadata documents were fetched for this address; try again in a few minutes',
          { status: 429, retryAfterSeconds: verdict.retryAfterSeconds },
        );
      // Another request may have started the same fetch while this one was admitted.
      const started = this.inflight.get(clientId);
      if (started) return started;
    }
    const fetching = this.fetch(clientId).then((doc) => {
      this.cache.delete(clientId);
      if (this.cache.size >= 1000) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(clientId, doc);
      return doc;
    });
    this.inflight.set(clientId, fetching);
    try {
      return await fetching;
    } finally {
      this.inflight.delete(clientId);
    }
  }

  private async fetch(clientId: string): Promise<MetadataDocument> {
    const problem = metadataUrlProblem(clientId, this.allowLoopback);
    if (problem) throw new MetadataDocumentError(`the client_id URL ${problem}`);
    const host = new URL(clientId).hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) && !publicAddress(host, this.allowLoopback))
      throw new MetadataDocumentError('the client_id URL points at a non-public address');
    let text: string;
    let maxAge = 300;
    try {
      const res = await request(clientId, {
        dispatcher: this.agent,
        method: 'GET',
        headers: { accept: 'application/json' },
        headersTimeout: TIMEOUT_MS,
        bodyTimeout: TIMEOUT_MS,
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new MetadataDocumentError(`the client metadata document answered ${res.statusCode}`);
      }
      const type = String(res.headers['content-type'] ?? '')
        .split(';')[0]!
        .trim()
        .toLowerCase();
      if (type !== 'application/json' && !type.endsWith('+json')) {
        await res.body.dump();
        throw new MetadataDocumentError('the client metadata document is not JSON');
      }
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > MAX_BYTES) {
        await res.body.dump();
        throw new MetadataDocumentError('the client metadata document is too large');
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_BYTES) {
          res.body.destroy();
          throw new MetadataDocumentError('the client metadata document is too large');
        }
        chunks.push(chunk as Buffer);
      }
      text = Buffer.concat(chunks).toString('utf8');
      const cc = /max-age=(\d+)/.exec(String(res.headers['cache-control'] ?? ''));
      if (cc) maxAge = Number(cc[1]);
    } catch (err) {
      if (err instanceof MetadataDocumentError) throw err;
      if (
        (err as NodeJS.ErrnoException).code === NON_PUBLIC ||
        ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code === NON_PUBLIC
      ) {
        throw new MetadataDocumentError('the client_id URL resolves to a non-public address');
      }
      throw new MetadataDocumentError(
        `the client metadata document could not be fetched (${(err as NodeJS.ErrnoException).code ?? (err as Error).name})`,
      );
    }
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new MetadataDocumentError('the client metadata document is not valid JSON');
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
      throw new MetadataDocumentError('the client metadata document is not a JSON object');
    if (doc.client_id !== clientId)
      throw new MetadataDocumentError("the document's client_id is not the URL it was fetched from");
    if ('client_secret' in doc || 'client_secret_expires_at' in doc)
      throw new MetadataDocumentError('a client metadata document must not carry a client secret');
    const method = doc.token_endpoint_auth_method ?? 'none';
    if (method !== 'none')
      throw new MetadataDocumentError(
        `token_endpoint_auth_method "${String(method)}" is not supported for metadata-document clients; use "none"`,
      );
    return {
      clientId,
      name: typeof doc.client_name === 'string' ? doc.client_name : undefined,
      clientUri: typeof doc.client_uri === 'string' ? doc.client_uri : undefined,
      redirectUris: Array.isArray(doc.redirect_uris)
        ? doc.redirect_uris.filter((u): u is string => typeof u === 'string')
        : [],
      grantTypes: Array.isArray(doc.grant_types)
        ? doc.grant_types.filter((g): g is string => typeof g === 'string')
        : ['authorization_code'],
      scope: typeof doc.scope === 'string' ? doc.scope : undefined,
      freshUntil: this.now() + Math.min(3600, Math.max(60, maxAge)) * 1000,
    };
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}
