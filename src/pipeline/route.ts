import type { ServerResponse } from 'node:http';
import { sendJson } from '../http/respond.ts';
import type { KeyRing } from '../keys/keys.ts';
import type { RequestContext } from '../http/context.ts';

/**
 * Gatehouse's routes at the root of every site, under /.well-known/. Only the exact paths
 * registered here are Gatehouse's (never forwarded to an app); every other /.well-known/*
 * path goes to the app through its rules, as any path does. Register new ones in
 * Gatehouse's constructor next to jwks.json (e.g. oauth-authorization-server).
 */
export type WellKnownHandler = (ctx: RequestContext) => void | Promise<void>;

const WELL_KNOWN_PREFIX = '/.well-known/';
export const JWKS_PATH = '/.well-known/jwks.json';

type Route = { handler: WellKnownHandler; methods: readonly string[] };

export class WellKnown {
  private readonly routes = new Map<string, Route>();
  /** Paths that are Gatehouse's with everything below them (RFC 9728's path-suffixed metadata). */
  private readonly trees = new Map<string, Route>();

  add(path: string, handler: WellKnownHandler, methods: readonly string[] = ['GET', 'HEAD']): this {
    if (!path.startsWith(WELL_KNOWN_PREFIX) || path.length === WELL_KNOWN_PREFIX.length)
      throw new Error(`a well-known route is under ${WELL_KNOWN_PREFIX}: ${path}`);
    this.routes.set(path, { handler, methods });
    return this;
  }

  /** Like add, for the path and every path below it (`path/...`). */
  addTree(path: string, handler: WellKnownHandler, methods: readonly string[] = ['GET', 'HEAD']): this {
    this.add(path, handler, methods);
    this.trees.set(path, { handler, methods });
    return this;
  }

  private find(path: string): Route | undefined {
    const exact = this.routes.get(path);
    if (exact || this.trees.size === 0) return exact;
    const second = path.indexOf('/', WELL_KNOWN_PREFIX.length);
    return second === -1 ? undefined : this.trees.get(path.slice(0, second));
  }

  /** Whether this (normalized) path is Gatehouse's. */
  has(path: string): boolean {
    return path.length > WELL_KNOWN_PREFIX.length && path.charCodeAt(1) === 46 /* . */ && this.find(path) !== undefined;
  }

  /** Answers the request; the caller checked has(path). */
  async handle(ctx: RequestContext): Promise<void> {
    const route = this.find(ctx.path)!;
    const method = ctx.req.method ?? 'GET';
    if (!route.methods.includes(method)) {
      return sendJson(
        ctx.res,
        405,
        { error: 'method_not_allowed', message: 'This method is not allowed here.' },
        { allow: route.methods.join(', ') },
      );
    }
    await route.handler(ctx);
  }
}

/**
 * GET /.well-known/jwks.json: the public keys (published, pending and retiring ones) in
 * the same bytes on every node. Cache-Control max-age never exceeds the time a new key is
 * published before it signs (minus the nodes' refresh interval); ETag for cheap revalidation.
 */
export function jwksRoute(ring: KeyRing): WellKnownHandler {
  return ({ req, res }) => {
    const { body, etag } = ring.jwks();
    const headers = {
      'content-type': 'application/jwk-set+json',
      'cache-control': `public, max-age=${ring.jwksMaxAge}`,
      etag,
      'access-control-allow-origin': '*',
      'x-content-type-options': 'nosniff',
    };
    const match = req.headers['if-none-match'];
    if (match !== undefined && match.split(',').some((t) => t.trim().replace(/^W\//, '') === etag))
      return void end(res, 304, headers);
    end(res, 200, { ...headers, 'content-length': Buffer.byteLength(body) }, req.method === 'HEAD' ? undefined : body);
  };
}

function end(res: ServerResponse, status: number, headers: Record<string, string | number>, body?: string): void {
  res.writeHead(status, headers);
  res.end(body);
}
