import type { ServerResponse } from 'node:http';
import type { AccountActivity } from '../accounts/activity.ts';
import type { AccountPage } from '../accounts/account-page.ts';
import type { AccountDeletion } from '../accounts/deletion.ts';
import type { AccountExport } from '../accounts/export.ts';
import type { EmailChange } from '../accounts/email-change.ts';
import type { InvitationPage } from '../accounts/invitations.ts';
import type { Reauthentication } from '../accounts/reauth.ts';
import type { PasswordRecovery } from '../accounts/recovery.ts';
import type { SignIn } from '../accounts/sign-in.ts';
import type { SignInLinks } from '../accounts/sign-in-links.ts';
import type { SingleSignOn } from '../accounts/sso.ts';
import type { EmailVerification } from '../accounts/verification.ts';
import { METHODS } from '../config/schema.ts';
import type { Exchange, RequestContext } from '../http/context.ts';
import { paths } from '../http/paths.ts';
import type { Params } from '../http/router.ts';
import { serveJwks } from '../keys/jwks.ts';
import type { KeyRing } from '../keys/keys.ts';
import type { SecondFactorRoutes } from '../mfa/routes.ts';
import type { OAuthServer } from '../oauth/server.ts';
import type { ForwardAuth } from '../pipeline/forward-auth.ts';
import type { RouteEntry, RouteTable } from '../pipeline/route.ts';
import type { ProviderRoutes } from '../providers/routes.ts';
import { serveLogo } from '../pages/index.ts';
import type { Site } from '../sites/index.ts';

/**
 * Every path Gatehouse answers itself, with its methods and its handler: the one route table.
 * Handlers stay in their feature folders; this file only says which answers what. HEAD is
 * served by a GET handler (http/router.ts). Own routes are below the prefix (/.auth, after
 * publicUrl's base path); a method the table does not list gets 405 with Allow.
 */

/** The parts whose methods answer routes, made by Gatehouse (gatehouse.ts). */
export interface Features {
  signIn: SignIn;
  account: AccountPage;
  verification: EmailVerification;
  recovery: PasswordRecovery;
  /** Sign-in by a mailed link (accounts/sign-in-links.ts). */
  signInLinks: SignInLinks;
  /** Single sign-on across hosts (accounts/sso.ts). */
  sso: SingleSignOn;
  /** "Confirm it's you" before sensitive actions (accounts/reauth.ts). */
  reauth: Reauthentication;
  /** Change of email address (accounts/email-change.ts). */
  emailChange: EmailChange;
  /** The user deletes their own account (accounts/deletion.ts). */
  deletion: AccountDeletion;
  /** What is kept about the user, as a file (accounts/export.ts). */
  dataExport: AccountExport;
  /** The invitation link's pages (accounts/invitations.ts). */
  invitations: InvitationPage;
  providers: ProviderRoutes;
  oauth: OAuthServer;
  forwardAuth: ForwardAuth;
  keys: KeyRing;
  /** Browser sessions and recent activity on the account page (accounts/activity.ts). */
  activity: AccountActivity;
  /** The node's own probes (gatehouse.ts). */
  probes: { health(res: ServerResponse): Promise<void>; ready(res: ServerResponse): Promise<void> };
  /** Second factors: passkeys, authenticator apps, recovery codes, step-up (mfa/). */
  mfa: SecondFactorRoutes;
}

type Row = { path: string; methods: readonly string[]; tree?: boolean } & (
  | { handler: (f: Features, ctx: RequestContext<Site>, params: Params) => void | Promise<void> }
  /** Answered whatever the Host, also for a Host that names no site (so without one). */
  | { anyHost: (f: Features, x: Exchange) => void | Promise<void> }
);

const GET = ['GET'] as const;
const POST = ['POST'] as const;
const OPTIONS = ['OPTIONS'] as const;
/** The well-known documents: GET, HEAD and the CORS preflight. */
const DOCUMENT = ['GET', 'HEAD', 'OPTIONS'] as const;

export const routes: { own: readonly Row[]; wellKnown: readonly Row[] } = {
  own: [
    // accounts/sign-in.ts
    { path: paths.login, methods: GET, handler: (f, c) => f.signIn.loginForm(c) },
    { path: paths.login, methods: POST, handler: (f, c) => f.signIn.login(c) },
    { path: paths.register, methods: GET, handler: (f, c) => f.signIn.registerForm(c) },
    { path: paths.register, methods: POST, handler: (f, c) => f.signIn.register(c) },
    { path: paths.logout, methods: GET, handler: (f, c) => f.signIn.logoutForm(c) },
    { path: paths.logout, methods: POST, handler: (f, c) => f.signIn.logout(c) },
    { path: paths.me, methods: GET, handler: (f, c) => f.signIn.me(c) },
    // accounts/account-page.ts (its sections: accountSections below)
    { path: paths.account, methods: GET, handler: (f, c) => f.account.page(c) },
    // accounts/activity.ts (browser sessions, recent activity)
    { path: paths.accountSessions, methods: GET, handler: (f, c) => f.activity.sessionsJson(c) },
    { path: paths.endSession, methods: POST, handler: (f, c) => f.activity.end(c) },
    { path: paths.endOtherSessions, methods: POST, handler: (f, c) => f.activity.endOthers(c) },
    { path: paths.accountActivity, methods: GET, handler: (f, c) => f.activity.activityJson(c) },
    // accounts/verification.ts
    { path: paths.verifyEmail, methods: GET, handler: (f, c) => f.verification.page(c) },
    { path: paths.verifyEmail, methods: POST, handler: (f, c) => f.verification.confirm(c) },
    { path: paths.resendVerification, methods: POST, handler: (f, c) => f.verification.resend(c) },
    // accounts/sign-in-links.ts
    { path: paths.signInLink, methods: GET, handler: (f, c) => f.signInLinks.requestForm(c) },
    { path: paths.signInLink, methods: POST, handler: (f, c) => f.signInLinks.request(c) },
    { path: paths.openSignInLink, methods: GET, handler: (f, c) => f.signInLinks.openForm(c) },
    { path: paths.openSignInLink, methods: POST, handler: (f, c) => f.signInLinks.open(c) },
    // accounts/sso.ts: the code on publicUrl's site, its use on an app's host
    { path: paths.sso, methods: GET, handler: (f, c) => f.sso.issue(c) },
    { path: paths.ssoCallback, methods: GET, handler: (f, c) => f.sso.redeem(c) },
    // accounts/recovery.ts
    { path: paths.forgotPassword, methods: GET, handler: (f, c) => f.recovery.forgotForm(c) },
    { path: paths.forgotPassword, methods: POST, handler: (f, c) => f.recovery.forgot(c) },
    { path: paths.resetPassword, methods: GET, handler: (f, c) => f.recovery.resetForm(c) },
    { path: paths.resetPassword, methods: POST, handler: (f, c) => f.recovery.reset(c) },
    { path: paths.changePassword, methods: GET, handler: (f, c) => f.recovery.changeForm(c) },
    { path: paths.changePassword, methods: POST, handler: (f, c) => f.recovery.change(c) },
    // accounts/reauth.ts
    { path: paths.reauth, methods: GET, handler: (f, c) => f.reauth.page(c) },
    { path: paths.reauth, methods: POST, handler: (f, c) => f.reauth.submit(c) },
    // accounts/email-change.ts
    { path: paths.changeEmail, methods: POST, handler: (f, c) => f.emailChange.request(c) },
    { path: paths.confirmEmailChange, methods: GET, handler: (f, c) => f.emailChange.page(c) },
    { path: paths.confirmEmailChange, methods: POST, handler: (f, c) => f.emailChange.confirm(c) },
    // accounts/export.ts
    { path: paths.accountExport, methods: GET, handler: (f, c) => f.dataExport.download(c) },
    // accounts/deletion.ts
    { path: paths.deleteAccount, methods: POST, handler: (f, c) => f.deletion.delete(c) },
    // accounts/invitations.ts
    { path: paths.invite, methods: GET, handler: (f, c) => f.invitations.page(c) },
    { path: paths.invite, methods: POST, handler: (f, c) => f.invitations.submit(c) },
    // providers/routes.ts
    { path: paths.loginWith, methods: GET, handler: (f, c, p) => f.providers.startGet(c, p) },
    { path: paths.loginWith, methods: POST, handler: (f, c, p) => f.providers.startPost(c, p) },
    { path: paths.callback, methods: GET, handler: (f, c, p) => f.providers.callback(c, p) },
    { path: paths.linkProvider, methods: POST, handler: (f, c) => f.providers.link(c) },
    { path: paths.reauthProvider, methods: POST, handler: (f, c) => f.providers.reauthStart(c) },
    { path: paths.unlinkProvider, methods: POST, handler: (f, c) => f.providers.unlink(c) },
    { path: paths.signedOut, methods: GET, handler: (f, c) => f.providers.signedOut(c) },
    { path: paths.backchannelLogout, methods: POST, handler: (f, c, p) => f.providers.backchannelLogout(c, p) },
    // oauth/server.ts, oauth/device.ts, oauth/authorize.ts: the endpoints on publicUrl's site only
    {
      path: paths.oauthDeviceAuthorization,
      methods: POST,
      handler: (f, c) => f.oauth.onIssuerSite(c, (c) => f.oauth.device.authorize(c)),
    },
    { path: paths.oauthToken, methods: POST, handler: (f, c) => f.oauth.onIssuerSite(c, (c) => f.oauth.token(c)) },
    { path: paths.oauthRevoke, methods: POST, handler: (f, c) => f.oauth.onIssuerSite(c, (c) => f.oauth.revoke(c)) },
    {
      path: paths.oauthRegister,
      methods: POST,
      handler: (f, c) => f.oauth.onIssuerSite(c, (c) => f.oauth.register(c)),
    },
    { path: paths.oauthToken, methods: OPTIONS, handler: (f, c) => f.oauth.cors(c, 'POST') },
    { path: paths.oauthDeviceAuthorization, methods: OPTIONS, handler: (f, c) => f.oauth.cors(c, 'POST') },
    { path: paths.oauthRevoke, methods: OPTIONS, handler: (f, c) => f.oauth.cors(c, 'POST') },
    { path: paths.oauthRegister, methods: OPTIONS, handler: (f, c) => f.oauth.cors(c, 'POST') },
    {
      path: paths.oauthAuthorize,
      methods: GET,
      handler: (f, c) => f.oauth.onIssuerSite(c, (c) => f.oauth.code.start(c)),
    },
    {
      path: paths.oauthAuthorize,
      methods: POST,
      handler: (f, c) => f.oauth.onIssuerSite(c, (c) => f.oauth.code.decide(c)),
    },
    { path: paths.device, methods: GET, handler: (f, c) => f.oauth.device.page(c) },
    { path: paths.device, methods: POST, handler: (f, c) => f.oauth.device.submit(c) },
    { path: paths.revokeGrant, methods: POST, handler: (f, c) => f.oauth.revokeByUser(c) },
    // pipeline/forward-auth.ts: asked by nginx, Traefik, Caddy with the original method
    { path: paths.check, methods: METHODS, handler: (f, c) => f.forwardAuth.handle(c) },
    // mfa/routes.ts
    { path: paths.secondFactor, methods: GET, handler: (f, c) => f.mfa.stepPage(c) },
    { path: paths.secondFactor, methods: POST, handler: (f, c) => f.mfa.stepSubmit(c) },
    { path: paths.totp, methods: GET, handler: (f, c) => f.mfa.totpForm(c) },
    { path: paths.totp, methods: POST, handler: (f, c) => f.mfa.totpConfirm(c) },
    { path: paths.totpRemove, methods: POST, handler: (f, c) => f.mfa.totpRemove(c) },
    { path: paths.recoveryCodes, methods: POST, handler: (f, c) => f.mfa.regenerateCodes(c) },
    { path: paths.passkeyRegisterOptions, methods: POST, handler: (f, c) => f.mfa.passkeyRegisterOptions(c) },
    { path: paths.passkeyRegister, methods: POST, handler: (f, c) => f.mfa.passkeyRegister(c) },
    { path: paths.passkeyLoginOptions, methods: POST, handler: (f, c) => f.mfa.passkeyLoginOptions(c) },
    { path: paths.passkeyLogin, methods: POST, handler: (f, c) => f.mfa.passkeyLogin(c) },
    { path: paths.passkeyRemove, methods: POST, handler: (f, c) => f.mfa.passkeyRemove(c) },
    { path: paths.invitePasskeyOptions, methods: POST, handler: (f, c) => f.mfa.passkeyRegisterOptions(c) },
    { path: paths.invitePasskey, methods: POST, handler: (f, c) => f.mfa.passkeyRegister(c) },
    { path: paths.webauthnScript, methods: GET, handler: (f, c) => f.mfa.script(c, 'webauthn') },
    { path: paths.passkeysScript, methods: GET, handler: (f, c) => f.mfa.script(c, 'passkeys') },
    // The site's logo (branding.logo), under a name with its content hash.
    { path: paths.brandLogo, methods: GET, handler: (_f, c, p) => serveLogo(c, p.file) },
    // the probes (gatehouse.ts)
    { path: paths.health, methods: GET, anyHost: (f, x) => f.probes.health(x.res) },
    { path: paths.ready, methods: GET, anyHost: (f, x) => f.probes.ready(x.res) },
  ],
  wellKnown: [
    // keys/jwks.ts: apps fetch it by an internal address too
    { path: paths.jwks, methods: ['GET', 'HEAD'], anyHost: (f, x) => serveJwks(f.keys, x) },
    // oauth/server.ts
    { path: paths.oauthAuthorizationServer, methods: DOCUMENT, handler: (f, c) => f.oauth.authorizationServer(c) },
    {
      path: paths.oauthProtectedResource,
      methods: DOCUMENT,
      tree: true,
      handler: (f, c) => f.oauth.protectedResource(c, c.path.slice(paths.oauthProtectedResource.length)),
    },
  ],
};

/**
 * The account page's sections (/.auth/account), in the order shown; `formActions`: origins the
 * section's forms are redirected to (added to the page's Content-Security-Policy).
 */
export function accountSections(f: Features): void {
  f.account
    .addSection(5, (c, active, csrf) => f.verification.accountSection(c, active, csrf))
    .addSection(6, (c, active, csrf) => f.emailChange.accountSection(c, active, csrf))
    .addSection(
      10,
      (c, active, csrf) => f.providers.identities(c, active, csrf),
      () => f.providers.formActions(),
    )
    .addSection(15, (c, active, csrf) => f.recovery.accountSection(c, active, csrf))
    .addSection(20, (c, active, csrf) => f.oauth.accountSection(c, active, csrf))
    .addSection(12, (c, active, csrf) => f.mfa.accountSection(c, active, csrf))
    .addSection(25, (c, active, csrf) => f.activity.sessionsSection(c, active, csrf))
    .addSection(30, (c, active) => f.activity.activitySection(c, active))
    .addSection(35, (c) => f.dataExport.accountSection(c))
    .addSection(40, (c, active, csrf) => f.deletion.accountSection(c, active, csrf));
}

/** The table with its handlers bound to `f`, as the pipeline routes by it (pipeline/route.ts). */
export function routeTable(f: Features): RouteTable {
  const bind = (r: Row): RouteEntry => {
    const { path, methods, tree } = r;
    if ('anyHost' in r) {
      const anyHost = (x: Exchange) => r.anyHost(f, x);
      return { path, methods, tree, handler: anyHost, anyHost };
    }
    return { path, methods, tree, handler: (c, p) => r.handler(f, c, p) };
  };
  return { own: routes.own.map(bind), wellKnown: routes.wellKnown.map(bind) };
}

/** The table without its handlers, for `gatehouse check --explain`, which routes but answers nothing. */
export function routeShapes(): RouteTable {
  const unanswered = () => {
    throw new Error('a route shape has no handler');
  };
  const shape = (r: Row): RouteEntry => ({
    path: r.path,
    methods: r.methods,
    tree: r.tree,
    handler: unanswered,
    anyHost: 'anyHost' in r ? unanswered : undefined,
  });
  return { own: routes.own.map(shape), wellKnown: routes.wellKnown.map(shape) };
}
