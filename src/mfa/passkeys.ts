import {
  type AuthenticationResponseJSON,
  type AuthenticatorTransport,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import { isIP } from 'node:net';
import type { Config } from '../config/schema.ts';
import type { Passkey, Store, User } from '../store/index.ts';

const TIMEOUT_MS = 120_000;

type RegistrationInfo = Extract<
  Awaited<ReturnType<typeof verifyRegistrationResponse>>,
  { verified: true }
>['registrationInfo'];

/** The relying party id: accounts.passkeys.rpId, else publicUrl's host name. */
export const rpIdOf = (config: Config): string =>
  config.accounts.passkeys.rpId ?? new URL(config.publicUrl).hostname.toLowerCase();

/** WebAuthn needs a domain as the RP ID: on an IP address passkeys are off (authenticator apps still work). */
export const passkeysPossible = (config: Config): boolean => isIP(rpIdOf(config).replace(/^\[|\]$/g, '')) === 0;

/** amr of a passkey (RFC 8176): synced (multi-device) keys are software-held, device-bound ones hardware. */
export const passkeyAmr = (p: Pick<Passkey, 'deviceType'>): string => (p.deviceType === 'multiDevice' ? 'swk' : 'hwk');

/**
 * WebAuthn through @simplewebauthn/server: attestation none, discoverable credentials, user
 * verification required for a passkey alone and preferred as a second factor. The counter and
 * backup flags are stored and updated at each use. Challenges are kept by the caller (in the
 * pending record, single use).
 */
export class Passkeys {
  private readonly store: Store;
  private readonly rpId: string;
  private readonly rpName: string;

  constructor(store: Store, config: Config) {
    this.store = store;
    this.rpId = rpIdOf(config);
    this.rpName = config.title ?? this.rpId;
  }

  async registrationOptions(
    user: Pick<User, 'id' | 'email' | 'name'>,
  ): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const existing = await this.store.mfa.passkeys(user.id);
    return generateRegistrationOptions({
      rpName: this.rpName,
      rpID: this.rpId,
      userName: user.email,
      userDisplayName: user.name ?? user.email,
      userID: new TextEncoder().encode(user.id),
      attestationType: 'none',
      timeout: TIMEOUT_MS,
      excludeCredentials: existing.map((p) => ({ id: p.id, transports: p.transports })),
      authenticatorSelection: { residentKey: 'required', userVerification: 'preferred' },
    });
  }

  /** Verifies a new credential (the browser's answer to registrationOptions). */
  async verifyRegistration(
    response: unknown,
    challenge: string,
    origin: string,
    requireUserVerification = false,
  ): Promise<{ ok: true; info: RegistrationInfo } | { ok: false; message: string }> {
    try {
      const r = await verifyRegistrationResponse({
        response: response as RegistrationResponseJSON,
        expectedChallenge: challenge,
        expectedOrigin: origin,
        expectedRPID: this.rpId,
        requireUserVerification,
      });
      if (!r.verified) return { ok: false, message: 'The passkey could not be verified.' };
      return { ok: true, info: r.registrationInfo };
    } catch (err) {
      return { ok: false, message: `The passkey could not be verified: ${(err as Error).message}` };
    }
  }

  /** Verifies and stores a new passkey; an error message when it does not verify. */
  async register(
    user: User,
    response: unknown,
    challenge: string,
    origin: string,
    name: string,
  ): Promise<{ ok: true; passkey: Passkey } | { ok: false; message: string }> {
    const checked = await this.verifyRegistration(response, challenge, origin);
    if (!checked.ok) return checked;
    return this.keep(user, checked.info, name);
  }

  /** Stores a verified credential as the user's passkey. */
  async keep(
    user: User,
    info: RegistrationInfo,
    name: string,
  ): Promise<{ ok: true; passkey: Passkey } | { ok: false; message: string }> {
    if (await this.store.mfa.passkey(info.credential.id))
      return { ok: false, message: 'This passkey is registered already.' };
    const passkey: Passkey = {
      id: info.credential.id,
      userId: user.id,
      publicKey: Buffer.from(info.credential.publicKey).toString('base64url'),
      counter: info.credential.counter,
      transports: info.credential.transports ?? [],
      deviceType: info.credentialDeviceType,
      backedUp: info.credentialBackedUp,
      name,
      createdAt: Date.now(),
      lastUsedAt: null,
    };
    await this.store.mfa.addPasskey(passkey);
    return { ok: true, passkey };
  }

  /** Options for a sign-in: `user` known (second factor: their passkeys), or none (a passkey alone). */
  async authenticationOptions(user?: User): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const allow = user ? await this.store.mfa.passkeys(user.id) : [];
    return generateAuthenticationOptions({
      rpID: this.rpId,
      timeout: TIMEOUT_MS,
      allowCredentials: allow.map((p) => ({ id: p.id, transports: p.transports as AuthenticatorTransport[] })),
      userVerification: user ? 'preferred' : 'required',
    });
  }

  /**
   * Verifies an assertion. `userId`: the user it must belong to (second factor), or null for a
   * passkey alone, which must then prove user verification. Returns the passkey used.
   */
  async authenticate(
    response: unknown,
    challenge: string,
    origin: string,
    userId: string | null,
  ): Promise<{ ok: true; passkey: Passkey; userVerified: boolean } | { ok: false; message: string }> {
    const r = response as AuthenticationResponseJSON;
    if (!r || typeof r !== 'object' || typeof r.id !== 'string' || r.id.length > 1024)
      return { ok: false, message: 'Not a passkey answer.' };
    const passkey = await this.store.mfa.passkey(r.id);
    // Another user's credential, or one that is not (any longer) registered.
    if (!passkey || (userId !== null && passkey.userId !== userId))
      return { ok: false, message: 'This passkey is not registered for this account.' };
    if (userId === null && r.response?.userHandle !== undefined) {
      const handle = Buffer.from(String(r.response.userHandle), 'base64url').toString('utf8');
      if (handle !== passkey.userId) return { ok: false, message: 'This passkey is not registered for this account.' };
    }
    try {
      const v = await verifyAuthenticationResponse({
        response: r,
        expectedChallenge: challenge,
        expectedOrigin: origin,
        expectedRPID: this.rpId,
        credential: {
          id: passkey.id,
          publicKey: new Uint8Array(Buffer.from(passkey.publicKey, 'base64url')),
          counter: passkey.counter,
          transports: passkey.transports as AuthenticatorTransport[],
        },
        requireUserVerification: userId === null,
      });
      if (!v.verified) return { ok: false, message: 'The passkey could not be verified.' };
      await this.store.mfa.usedPasskey(
        passkey.id,
        v.authenticationInfo.newCounter,
        v.authenticationInfo.credentialBackedUp,
        Date.now(),
      );
      return { ok: true, passkey, userVerified: v.authenticationInfo.userVerified };
    } catch (err) {
      return { ok: false, message: `The passkey could not be verified: ${(err as Error).message}` };
    }
  }
}
