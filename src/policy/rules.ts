// policy/ (model): route rules: globs compiled once, the first rule that matches a method and path, and
// allow-lists of users.
import type { AllowConfig, RouteConfig } from '../config/schema.ts';
import { AddressSet } from '../http/client-ip.ts';

/**
 * Route rules, compiled once. Matching runs on the normalized path (http/target.ts), the
 * same path the app receives; the query never takes part. First match wins.
 */

export type Access = 'public' | 'authenticated' | 'deny';

export interface Rule {
  /** Position in the config, for `gatehouse check --explain` and logs; -1 for the default. */
  index: number;
  path: string;
  methods: ReadonlySet<string> | null;
  /** Only clients at these addresses meet the rule (`from`); null: any. */
  from: AddressSet | null;
  access: Access;
  allow: Allow | null;
  unauthenticated: 'redirect' | '401' | null;
  /** A provider id: relay its access token here; false: not here; null: as the app says. */
  tokenRelay: string | false | null;
  /**
   * At most `requests` per `perMs` for each user (or client address): rate-limit.ts. `headers`: the
   * answers carry the RateLimit fields.
   */
  rateLimit: { requests: number; perMs: number; headers: boolean } | null;
  /** routes[].timeouts (ms): the app's response and idle timeouts for these paths; null: the app's own. */
  timeouts: { response?: number; idle?: number } | null;
  regex: RegExp;
}

export interface Allow {
  emails: ReadonlySet<string>;
  domains: ReadonlySet<string>;
  groups: ReadonlySet<string>;
  /** Step-up: a second factor in this session (amr "mfa") is needed as well. */
  mfa: boolean;
  /**
   * allow.providers: this session must have been signed in through one of these providers (amr
   * "idp:<id>") as well; null: any way of signing in.
   */
  providers: readonly string[] | null;
  /** Whether any list was given: `allow: {mfa: true}` alone admits every signed-in user (who has it). */
  lists: boolean;
}

export interface Identity {
  email: string;
  emailVerified: boolean;
  groups: readonly string[];
}

/** "*" is one segment's worth of characters, "**" any number of segments; "/x/**" matches "/x" too. */
export function globToRegExp(glob: string, caseSensitive: boolean): RegExp {
  let re = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (re.endsWith('/') && (i === glob.length - 1 || glob[i + 1] === '/')) {
          // "/**" at a segment boundary: the segment and everything under it, or nothing.
          re = re.slice(0, -1) + '(?:/.*)?';
          if (glob[i + 1] === '/') {
            re += '/';
            i++;
          }
        } else re += '.*';
      } else re += '[^/]*';
    } else re += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(re + '$', caseSensitive ? '' : 'i');
}

export function compileAllow(a: AllowConfig | undefined): Allow | null {
  if (!a) return null;
  return {
    emails: new Set((a.emails ?? []).map((e) => e.toLowerCase())),
    domains: new Set((a.domains ?? []).map((d) => d.toLowerCase())),
    groups: new Set(a.groups ?? []),
    mfa: a.mfa === true,
    providers: a.providers ?? null,
    lists: a.emails !== undefined || a.domains !== undefined || a.groups !== undefined,
  };
}

/** Whether a session or token that proved `amr` meets the rule's step-up (allow.mfa). */
export function meetsStepUp(allow: Allow | null, amr: readonly string[]): boolean {
  return !allow?.mfa || amr.includes('mfa');
}

/**
 * Whether a session or token that proved `amr` was signed in through one of `providers` (a rule's
 * allow.providers, the sign-in page's ?via=); null: any way of signing in will do.
 */
export function meetsProviders(providers: readonly string[] | null | undefined, amr: readonly string[]): boolean {
  return !providers?.length || providers.some((id) => amr.includes(`idp:${id}`));
}

export function compileRules(
  routes: readonly RouteConfig[],
  defaultAccess: 'authenticated' | 'deny',
  caseSensitive: boolean,
): { rules: Rule[]; fallback: Rule } {
  const rules = routes.map<Rule>((r, index) => ({
    index,
    path: r.path,
    methods: r.methods ? new Set(r.methods) : null,
    from: r.from ? new AddressSet(r.from) : null,
    access: r.access,
    allow: compileAllow(r.allow),
    unauthenticated: r.unauthenticated ?? null,
    tokenRelay: r.tokenRelay ?? null,
    rateLimit: r.rateLimit
      ? { requests: r.rateLimit.requests, perMs: r.rateLimit.per, headers: r.rateLimit.headers }
      : null,
    timeouts: r.timeouts && (r.timeouts.response || r.timeouts.idle) ? r.timeouts : null,
    regex: globToRegExp(r.path, caseSensitive),
  }));
  const fallback: Rule = {
    index: -1,
    path: '/**',
    methods: null,
    from: null,
    access: defaultAccess,
    allow: null,
    unauthenticated: null,
    tokenRelay: null,
    rateLimit: null,
    timeouts: null,
    regex: /^/,
  };
  return { rules, fallback };
}

/**
 * The first rule that matches the method, the path and the client's address (`ip`: the one
 * http/forwarded.ts resolved; undefined meets no rule with `from`), else the fallback.
 */
export function matchRule(
  rules: readonly Rule[],
  fallback: Rule,
  method: string,
  path: string,
  ip: string | undefined,
): Rule {
  for (const rule of rules) {
    if (rule.methods && !rule.methods.has(method)) continue;
    if (rule.from && !rule.from.has(ip)) continue;
    if (rule.regex.test(path)) return rule;
  }
  return fallback;
}

/**
 * Whether a signed-in identity passes a rule's allow-list. Email and domain entries only
 * count for a verified email: an address someone merely typed at registration proves nothing.
 */
export function allows(allow: Allow | null, who: Identity): boolean {
  if (!allow || !allow.lists) return true;
  if (who.emailVerified) {
    const email = who.email.toLowerCase();
    if (allow.emails.has(email)) return true;
    const at = email.lastIndexOf('@');
    if (at !== -1 && allow.domains.has(email.slice(at + 1))) return true;
  }
  for (const g of who.groups) if (allow.groups.has(g)) return true;
  return false;
}
