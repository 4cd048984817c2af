import { z } from 'zod';
import { durationField } from './duration.ts';
import { isLoopbackHost } from '../http/loopback.ts';

/**
 * The `providers:` list of gatehouse.yaml: every way to sign in besides a password. Part of
 * the one config schema (src/config/schema.ts imports it); kept here beside the code it drives.
 */

/**
 * https, or http on a loopback host (development and tests: the only hosts plain http is allowed
 * to); never credentials, query or fragment.
 */
export const providerUrl = (what: string) =>
  z.string().superRefine((v, ctx) => {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      ctx.addIssue({
        code: 'custom',
        message: 'expected an absolute https:// URL such as https://accounts.example.com',
      });
      return;
    }
    if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
      ctx.addIssue({
        code: 'custom',
        message: `${what} must use https; plain http is allowed only on loopback (localhost, 127.0.0.1, ::1) for development`,
      });
    } else if (u.protocol !== 'http:' && u.protocol !== 'https:')
      ctx.addIssue({ code: 'custom', message: `${what} must use https` });
    if (u.username || u.password) ctx.addIssue({ code: 'custom', message: `${what} must not contain credentials` });
    if (u.search || u.hash) ctx.addIssue({ code: 'custom', message: `${what} must not have a query or fragment` });
  });

const timeout = durationField('10s', { min: 1000, max: 60_000, range: '"1s" and "60s"' }).meta({
  description: 'Longest wait for one request to the provider (discovery, token, userinfo, API); default "10s"',
});

/** Parameters Gatehouse sets itself: a config may not override them. */
const RESERVED_PARAMS = new Set([
  'client_id',
  'client_secret',
  'redirect_uri',
  'response_type',
  'response_mode',
  'scope',
  'state',
  'nonce',
  'code_challenge',
  'code_challenge_method',
  'request',
  'request_uri',
]);

const audience = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[\x21-\x7e]+$/, 'an audience is printable ASCII without spaces');

const PROVIDER_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
const PROVIDER_ID_EXPECTED = 'expected a provider id (one of providers[].id)';
/** A GitHub user or organization login: letters, digits and single hyphens inside, at most 39. */
const GITHUB_LOGIN = /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/;

const common = {
  id: z
    .string()
    .regex(PROVIDER_ID, 'a provider id is lower-case letters, digits and "-" (at most 32), such as google')
    .meta({
      description:
        'Names the provider in URLs (/.auth/login/<id>, /.auth/callback/<id>) and in tokenRelay. Changing it changes the redirect URI to register',
    }),
  name: z
    .string()
    .min(1)
    .max(40)
    .optional()
    .meta({ description: 'The button says "Continue with <name>"; default: the id, capitalised' }),
  icon: z
    .string()
    .max(16_384)
    .regex(
      /^(data:image\/(png|svg\+xml|gif|jpeg|webp);base64,[A-Za-z0-9+/=]+|\/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*)$/,
      'an icon is a data:image/...;base64 URI or a path on the site (no third-party images)',
    )
    .optional()
    .meta({
      description:
        'Image on the button: a data:image/...;base64 URI or a same-origin path; third-party URLs are refused',
    }),
  clientId: z.string().min(1).max(512).meta({ description: 'The client id registered at the provider' }),
  clientSecret: z
    .string()
    .min(1)
    .max(4096)
    .optional()
    .meta({ description: 'The client secret, usually "${ENV_NAME}"; omit only for a public client (PKCE alone)' }),
  scopes: z
    .array(
      z
        .string()
        .regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'a scope is printable ASCII without spaces, quotes or backslashes'),
    )
    .min(1)
    .optional()
    .meta({
      description: 'Scopes to ask for; default for oidc: openid, email, profile; for github: read:user, user:email',
    }),
  authorizationParams: z
    .record(
      z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected a parameter name of letters, digits, "_", "." and "-"'),
      z.string().max(512),
    )
    .optional()
    .superRefine((params, ctx) => {
      for (const k of Object.keys(params ?? {}))
        if (RESERVED_PARAMS.has(k))
          ctx.addIssue({ code: 'custom', path: [k], message: `"${k}" is set by Gatehouse and cannot be overridden` });
    })
    .meta({
      description:
        'Extra parameters on the authorization request, e.g. {access_type: offline, prompt: consent} for Google refresh tokens, or {domain_hint: example.com}',
    }),
  groupsClaim: z
    .string()
    .regex(/^[A-Za-z0-9_:/.-]+$/, 'expected a claim name such as groups or realm_access.roles')
    .default('groups')
    .meta({
      description:
        "Claim holding the user's groups or roles; dots walk into objects (Keycloak: realm_access.roles). Kept on the linked identity",
    }),
  syncGroups: z.boolean().default(false).meta({
    description:
      "At every sign-in (or link) through this provider, the user's groups (what allow.groups, X-User-Groups and the assertion read) become the groups it sends (groupsClaim; GitHub: organizations and teams), replacing those set before. Default false: the provider's groups are kept on the identity only, and operators set the user's",
  }),
  linkByEmail: z.boolean().default(false).meta({
    description:
      "Sign-in with an identity not yet linked may join the existing user with the same email, when both sides' emails are verified. Default false: users link from /.auth/account",
  }),
  trustEmail: z.boolean().default(false).meta({
    description:
      "Treat this provider's emails as verified even without email_verified (only for an IdP that owns its users' domains, e.g. a single-tenant Entra ID)",
  }),
  registration: z.enum(['open', 'closed']).optional().meta({
    description:
      "Whether a first sign-in creates a user; default: accounts.registration (invite counts as closed). accounts.allowedDomains applies to the provider's verified email",
  }),
  timeout,
  revalidate: durationField('0s')
    .refine((ms) => ms === 0 || ms >= 5_000, { message: 'expected 0 (off) or a duration of at least 5s' })
    .meta({
      description:
        "Ask the provider this often whether a session signed in through it still stands, with the refresh token of the sign-in: a refused refresh (the user disabled or removed there, the app's access revoked) ends the session at its next request. A sign-in that left no refresh token lasts this long, then signs in again. 0 (the default): off, a session lasts its timeouts or until the provider's back-channel logout",
    }),
  revalidateGrace: durationField('0s', { max: 604_800_000, range: '"0s" and "7d"' }).meta({
    description:
      'With revalidate: how long past revalidate a session may go unconfirmed while the provider cannot be asked (down, 5xx); then it ends at its next request, as a refusal would. 0 (the default): no limit, a provider outage never signs anyone out',
  }),
  mfa: z.enum(['trust', 'require']).default('trust').meta({
    description:
      "trust: the provider's amr/acr saying it did multi-factor authentication counts as a second factor here; require: Gatehouse asks for the user's own second factor as well, whatever the provider did",
  }),
};

export const OidcProviderSchema = z.strictObject({
  type: z.literal('oidc'),
  ...common,
  issuer: providerUrl('issuer').meta({
    description:
      'The issuer URL; its /.well-known/openid-configuration is read on first use (https; http only on loopback)',
  }),
  endSession: z.boolean().default(false).meta({
    description:
      'Logout also ends the session at the provider (RP-initiated logout, when discovery lists an end_session_endpoint)',
  }),
  backchannelLogout: z.boolean().default(true).meta({
    description:
      "Accept the provider's back-channel logout (OpenID Connect Back-Channel Logout 1.0) at <prefix>/backchannel-logout/<id>: its signed logout token ends the sessions signed in through the provider session (sid) or subject it names",
  }),
  idTokenSigningAlg: z
    .string()
    .regex(/^[A-Z][A-Za-z0-9]{2,15}$/, 'expected a JWS algorithm such as RS256 or ES256')
    .refine((a) => a !== 'none', 'alg "none" is never accepted')
    .optional()
    .meta({
      description: 'Accept ID tokens signed with this alg only; default: the algs the discovery document lists',
    }),
  tokenEndpointAuthMethod: z.enum(['client_secret_basic', 'client_secret_post']).optional().meta({
    description:
      'How the client secret is sent to the token endpoint; default: basic when discovery allows it, else post',
  }),
  bearerTokens: z
    .strictObject({
      audience: z
        .union([audience, z.array(audience).min(1).max(16)])
        .transform((a) => (typeof a === 'string' ? [a] : a))
        .meta({
          description:
            'The aud a token must carry (one of these): the identifier of the API at the provider (api://gatehouse, https://api.example.com), never the client id of Gatehouse, which ID tokens carry',
        }),
      apps: z.array(z.string().min(1)).min(1).optional().meta({
        description: 'The apps (apps[].name) that accept such tokens; default: every app',
      }),
    })
    .optional()
    .meta({
      description:
        "Accept JWT access tokens this provider issued (Authorization: Bearer) on the apps' routes, as a CLI or MCP login is: signed by its keys, its issuer, one of audience, not expired; the user is the one who signed in here through the provider with that subject. Off by default",
    }),
});

export const GithubProviderSchema = z.strictObject({
  type: z.literal('github'),
  ...common,
  clientSecret: z
    .string()
    .min(1)
    .max(4096)
    .meta({ description: 'The OAuth app\'s client secret, usually "${GITHUB_CLIENT_SECRET}"' }),
  url: providerUrl('url').default('https://github.com').meta({
    description: "GitHub's web URL (GitHub Enterprise Server: https://ghe.example.com); the identity's issuer",
  }),
  apiUrl: providerUrl('apiUrl')
    .default('https://api.github.com')
    .meta({ description: "GitHub's API URL (GitHub Enterprise Server: https://ghe.example.com/api/v3)" }),
  organizations: z
    .array(z.string().regex(GITHUB_LOGIN, 'expected an organization login: letters, digits and single "-"'))
    .min(1)
    .max(100)
    .optional()
    .meta({
      description:
        'Only members of one of these GitHub organizations may sign in (or link) through this provider; adds the read:org scope',
    }),
});

export const ProviderSchema = z
  .discriminatedUnion('type', [OidcProviderSchema, GithubProviderSchema])
  .superRefine((p, ctx) => {
    if (p.type === 'oidc' && p.scopes && !p.scopes.includes('openid'))
      ctx.addIssue({ code: 'custom', path: ['scopes'], message: 'an oidc provider\'s scopes must include "openid"' });
    if (p.type === 'github' && p.organizations && p.scopes && !p.scopes.includes('read:org'))
      ctx.addIssue({
        code: 'custom',
        path: ['scopes'],
        message: 'organizations needs the "read:org" scope (to see private memberships): add it, or leave scopes out',
      });
  })
  .meta({
    description:
      "A way to sign in: type oidc (any OpenID Connect issuer, by discovery) or github (GitHub's OAuth2 and API)",
  });

export const ProvidersSchema = z
  .array(ProviderSchema)
  .default([])
  .meta({ description: 'Sign-in providers; the login page shows one button per provider, in this order' });

/** tokenRelay on an app (a provider id) or a route (a provider id, or false to turn the app's off). */
export const TokenRelayRoute = z
  .union([z.string().regex(PROVIDER_ID, PROVIDER_ID_EXPECTED), z.literal(false)], {
    error: 'expected a provider id, or false',
  })
  .optional()
  .meta({
    description:
      "Send the signed-in user's access token of this provider to the app as Authorization: Bearer (refreshed as needed); false turns the app's tokenRelay off here",
  });
export const TokenRelayApp = z.string().regex(PROVIDER_ID, PROVIDER_ID_EXPECTED).optional().meta({
  description:
    "Send the signed-in user's access token of this provider to the app as Authorization: Bearer on every route (refreshed as needed); a client's own Authorization is dropped",
});

export type ProviderConfig = z.output<typeof ProviderSchema>;
export type OidcProviderConfig = z.output<typeof OidcProviderSchema>;
export type GithubProviderConfig = z.output<typeof GithubProviderSchema>;

const DEFAULT_SCOPES = { oidc: ['openid', 'email', 'profile'], github: ['read:user', 'user:email'] } as const;

/** The scopes a provider asks for: its own, or the defaults (a github provider with organizations: read:org too). */
export function scopesOf(p: ProviderConfig): readonly string[] {
  if (p.scopes) return p.scopes;
  if (p.type === 'oidc') return DEFAULT_SCOPES.oidc;
  return p.organizations ? [...DEFAULT_SCOPES.github, 'read:org'] : DEFAULT_SCOPES.github;
}

export function displayName(p: Pick<ProviderConfig, 'id' | 'name' | 'type'>): string {
  if (p.name) return p.name;
  if (p.type === 'github' && p.id === 'github') return 'GitHub';
  return p.id.charAt(0).toUpperCase() + p.id.slice(1);
}
