/**
 * @gatehouse/backstage-auth-provider: Backstage sign-in behind Gatehouse.
 *
 *   backend.add(import('@gatehouse/backstage-auth-provider'));
 *
 * registers the `gatehouse` auth provider (a proxy provider, as for ProxiedSignInPage): its
 * `/api/auth/gatehouse/refresh` issues a Backstage token to the user of a verified
 * X-Gatehouse-Assertion and refuses every other request with 401.
 */
import { createBackendModule } from '@backstage/backend-plugin-api';
import { authProvidersExtensionPoint, createProxyAuthProviderFactory } from '@backstage/plugin-auth-node';
import { gatehouseAuthenticator } from './authenticator.ts';
import { gatehouseSignInResolvers } from './resolvers.ts';

export { gatehouseAuthenticator, readVerifyOptions } from './authenticator.ts';
export { gatehouseProfile, verifiedEmail, type GatehouseResult } from './profile.ts';
export { gatehouseSignInResolvers, USER_ID_ANNOTATION } from './resolvers.ts';

/** The auth backend module: provider id `gatehouse`, with the resolvers of gatehouseSignInResolvers. */
export const authModuleGatehouseProvider = createBackendModule({
  pluginId: 'auth',
  moduleId: 'gatehouse-provider',
  register(reg) {
    reg.registerInit({
      deps: { providers: authProvidersExtensionPoint },
      async init({ providers }) {
        providers.registerProvider({
          providerId: 'gatehouse',
          factory: createProxyAuthProviderFactory({
            authenticator: gatehouseAuthenticator,
            signInResolverFactories: gatehouseSignInResolvers,
          }),
        });
      },
    });
  },
});

export default authModuleGatehouseProvider;
