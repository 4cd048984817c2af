export interface Config {
  auth?: {
    providers?: {
      /** Sign-in behind Gatehouse (@gatehouse/backstage-auth-provider). */
      gatehouse?: {
        /** Gatehouse's publicUrl, e.g. https://backstage.example.com: the assertion's `iss`. */
        issuer: string;
        /** The app's name in gatehouse.yaml (`name`, or `app` for a single upstream): the assertion's `aud`. */
        audience: string;
        /** Where to fetch Gatehouse's keys, if not `<issuer>/.well-known/jwks.json` (e.g. an internal address). */
        jwksUrl?: string;
        /** The assertion's header, if the app's `headers.assertion` renamed it; default `x-gatehouse-assertion`. */
        header?: string;
        /** Narrow the accepted signature algorithms; default both. */
        algorithms?: Array<'EdDSA' | 'ES256'>;
        signIn: {
          /** Tried in order; the first that finds exactly one User entity signs the user in. */
          resolvers: Array<
            | { resolver: 'userIdMatchingUserEntityAnnotation' }
            | { resolver: 'emailMatchingUserEntityProfileEmail' }
            | { resolver: 'emailLocalPartMatchingUserEntityName'; allowedDomains: string[] }
          >;
        };
      };
    };
  };
}
