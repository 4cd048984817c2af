import type { ProfileInfo } from '@backstage/plugin-auth-node';
import type { GatehouseUser } from 'gatehouse/verify';

/** What the Gatehouse authenticator hands to the profile transform and the sign-in resolvers. */
export interface GatehouseResult {
  /** The user of a verified `X-Gatehouse-Assertion`: signature, iss, aud, typ, exp checked. */
  user: GatehouseUser;
}

/**
 * The user's email address when Gatehouse vouches for it (`email_verified: true` in the
 * assertion), else undefined. A missing `email_verified` counts as unverified, and so does an
 * address an app receives only because it opted in to unverified ones.
 */
export function verifiedEmail(user: GatehouseUser): string | undefined {
  return user.emailVerified === true && typeof user.email === 'string' && user.email !== '' ? user.email : undefined;
}

/**
 * The Backstage profile of a Gatehouse user: the verified address only (an unverified one is
 * left out, so nothing downstream can take it for the user's), and the name when the app
 * receives it (`headers.name` in gatehouse.yaml).
 */
export function gatehouseProfile(user: GatehouseUser): ProfileInfo {
  const profile: ProfileInfo = {};
  const email = verifiedEmail(user);
  if (email) profile.email = email;
  if (typeof user.name === 'string' && user.name !== '') profile.displayName = user.name;
  return profile;
}
