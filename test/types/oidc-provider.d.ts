/**
 * The little of oidc-provider's API the test IdP uses (the package ships no types, and
 * @types/oidc-provider would pull in koa's). Only for test/helpers/idp.ts.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface OidcContext {
    path: string;
    method: string;
    status: number;
    body: unknown;
    oidc?: {
      params?: Record<string, unknown>;
      client?: { clientId: string };
      entities?: Record<string, { accountId?: string } | undefined>;
    };
  }

  export interface InteractionDetails {
    uid: string;
    prompt: {
      name: string;
      details: {
        missingOIDCScope?: string[];
        missingOIDCClaims?: string[];
        missingResourceScopes?: Record<string, string[]>;
      };
    };
    params: Record<string, string>;
    session?: { accountId?: string };
    grantId?: string;
  }

  export interface GrantInstance {
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(indicator: string, scope: string): void;
    save(): Promise<string>;
    destroy(): Promise<void>;
  }

  export interface TokenInstance {
    grantId: string;
    destroy(): Promise<void>;
  }

  export class Provider {
    constructor(issuer: string, configuration?: Record<string, unknown>);
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    use(middleware: (ctx: OidcContext, next: () => Promise<void>) => Promise<void>): void;
    on(event: string, listener: (...args: any[]) => void): this;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    Grant: {
      new (init: { accountId: string; clientId: string }): GrantInstance;
      find(id: string): Promise<GrantInstance | undefined>;
    };
    RefreshToken: { find(value: string): Promise<TokenInstance | undefined> };
    AccessToken: { find(value: string): Promise<TokenInstance | undefined> };
  }
  export const errors: { InvalidTarget: new (description?: string) => Error };
  export default Provider;
}
