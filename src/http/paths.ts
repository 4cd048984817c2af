/**
 * Every path Gatehouse answers itself. Own routes are below the prefix (publicUrl's base path +
 * authPrefix: /.auth, or /app/.auth), written here without it; well-known documents are below
 * publicUrl's base path. server/routes.ts maps each to its handler; pages link to them by these
 * names. A ":name" segment is a parameter (http/router.ts).
 */
export const paths = {
  // accounts/sign-in.ts
  login: '/login',
  register: '/register',
  logout: '/logout',
  me: '/me',
  // accounts/account-page.ts and the account page's forms
  account: '/account',
  changePassword: '/account/password',
  linkProvider: '/account/link',
  unlinkProvider: '/account/unlink',
  revokeGrant: '/account/grants/revoke',
  // accounts/export.ts: what is kept about the user, as a file
  accountExport: '/account/export',
  // accounts/deletion.ts: the user deletes their own account
  deleteAccount: '/account/delete',
  // accounts/activity.ts: browser sessions and recent activity
  accountSessions: '/account/sessions',
  endSession: '/account/sessions/end',
  endOtherSessions: '/account/sessions/end-others',
  accountActivity: '/account/activity',
  // accounts/reauth.ts: "confirm it's you" before a sensitive action
  reauth: '/reauth',
  // providers/routes.ts: "Continue with <provider>" on that page
  reauthProvider: '/reauth/provider',
  // accounts/verification.ts, accounts/recovery.ts (mailed links)
  verifyEmail: '/verify-email',
  resendVerification: '/verify-email/resend',
  forgotPassword: '/forgot-password',
  resetPassword: '/reset-password',
  // accounts/email-change.ts: asked for on the account page, confirmed by the link to the new address
  changeEmail: '/account/email',
  confirmEmailChange: '/confirm-email',
  // accounts/invitations.ts: the link of `gatehouse users invite`
  invite: '/invite',
  // accounts/sign-in-links.ts: sign-in by a mailed link (accounts.signInLinks)
  signInLink: '/sign-in-link',
  openSignInLink: '/sign-in-link/open',
  // accounts/sso.ts: single sign-on from publicUrl's site to the apps with sso
  sso: '/sso',
  ssoCallback: '/sso/callback',
  // providers/routes.ts
  loginWith: '/login/:provider',
  callback: '/callback/:provider',
  signedOut: '/signed-out',
  /** The provider's server posts its logout token here (OpenID Connect Back-Channel Logout 1.0). */
  backchannelLogout: '/backchannel-logout/:provider',
  // oauth/ (the OAuth server for CLIs and MCP clients)
  device: '/device',
  oauthAuthorize: '/oauth/authorize',
  oauthToken: '/oauth/token',
  oauthDeviceAuthorization: '/oauth/device_authorization',
  oauthRevoke: '/oauth/revoke',
  oauthRegister: '/oauth/register',
  // mfa/ (second factors: the step after a password, enrolment on the account page, passkeys)
  secondFactor: '/second-factor',
  totp: '/account/totp',
  totpRemove: '/account/totp/remove',
  recoveryCodes: '/account/recovery-codes',
  passkeyRegisterOptions: '/passkeys/register-options',
  passkeyRegister: '/passkeys/register',
  passkeyLoginOptions: '/passkeys/login-options',
  passkeyLogin: '/passkeys/login',
  passkeyRemove: '/account/passkeys/remove',
  /** Below /invite, where the invitation link's cookie is sent. */
  invitePasskeyOptions: '/invite/passkey-options',
  invitePasskey: '/invite/passkey',
  webauthnScript: '/assets/webauthn.js',
  passkeysScript: '/assets/passkeys.js',
  brandLogo: '/brand/:file',
  // forward-auth (pipeline/forward-auth.ts) and the probes
  check: '/check',
  health: '/health',
  ready: '/ready',
  // below publicUrl's base path, on every site
  jwks: '/.well-known/jwks.json',
  oauthAuthorizationServer: '/.well-known/oauth-authorization-server',
  /** RFC 9728: this path and every path below it (the path-suffixed form). */
  oauthProtectedResource: '/.well-known/oauth-protected-resource',
} as const;

export const WELL_KNOWN_PREFIX = '/.well-known/';
