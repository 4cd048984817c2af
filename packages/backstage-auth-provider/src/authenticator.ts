import { AuthenticationError, ServiceUnavailableError } from '@backstage/errors';
import { createProxyAuthenticator, type ProxyAuthenticator } from '@backstage/plugin-auth-node';
import {
  ASSERTION_ALGORITHMS,
  AssertionError,
  createVerifier,
  type Verifier,
  type VerifyOptions,
} from 'gatehouse/verify';
import { gatehouseProfile, type GatehouseResult } from './profile.ts';

/** The provider's part of app-config.yaml (`auth.providers.gatehouse`), as Backstage hands it over. */
type ProviderConfig = Parameters<ProxyAuthenticator<unknown, unknown>['initialize']>[0]['config'];

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

function httpUrl(key: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`auth.providers.gatehouse.${key} must be an absolute URL, got "${value}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new Error(`auth.providers.gatehouse.${key} must be an http or https URL, got "${value}"`);
  return value;
}

/**
 * gatehouse/verify's options from the provider's config: `issuer` (Gatehouse's publicUrl) and
 * `audience` (the app's name in gatehouse.yaml) are required; `jwksUrl`, `header` and
 * `algorithms` are optional. A bad value stops the backend at start, naming the key.
 */
export function readVerifyOptions(config: ProviderConfig): VerifyOptions {
  const options: VerifyOptions = {
    issuer: httpUrl('issuer', config.getString('issuer')),
    audience: config.getString('audience'),
  };
  if (!options.audience.trim()) throw new Error('auth.providers.gatehouse.audience must be the app name');
  const jwksUrl = config.getOptionalString('jwksUrl');
  if (jwksUrl !== undefined) options.jwksUrl = httpUrl('jwksUrl', jwksUrl);
  const header = config.getOptionalString('header');
  if (header !== undefined) {
    if (!HEADER_NAME.test(header)) throw new Error(`auth.providers.gatehouse.header is not a header name: "${header}"`);
    options.header = header;
  }
  const algorithms = config.getOptionalStringArray('algorithms');
  if (algorithms !== undefined) {
    const allowed: readonly string[] = ASSERTION_ALGORITHMS;
    const bad = algorithms.filter((a) => !allowed.includes(a));
    if (bad.length || !algorithms.length)
      throw new Error(`auth.providers.gatehouse.algorithms must be a non-empty list of ${allowed.join(', ')}`);
    options.algorithms = algorithms as VerifyOptions['algorithms'];
  }
  return options;
}

/**
 * The proxy authenticator: a request signs in only with a valid `X-Gatehouse-Assertion`
 * (signature against Gatehouse's JWKS, alg EdDSA/ES256, typ, iss, aud, exp). Anything else,
 * whatever identity headers it carries, gets 401; 503 when the keys cannot be fetched.
 */
export const gatehouseAuthenticator = createProxyAuthenticator<Verifier, GatehouseResult, undefined>({
  defaultProfileTransform: async (result) => ({ profile: gatehouseProfile(result.user) }),
  initialize({ config }) {
    return createVerifier(readVerifyOptions(config));
  },
  async authenticate({ req }, verify) {
    try {
      return { result: { user: await verify(req) } };
    } catch (err) {
      if (err instanceof AssertionError && err.status === 503)
        throw new ServiceUnavailableError("Gatehouse's signing keys could not be fetched", err);
      const code = err instanceof AssertionError ? err.code : 'malformed';
      throw new AuthenticationError(`No valid Gatehouse assertion (${code}): sign in through Gatehouse`, err);
    }
  },
});
