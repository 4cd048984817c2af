/**
 * A user as the store keeps it (types.ts has the rest of the storage contract; the other record
 * types refer to these).
 */

export interface User {
  id: string;
  email: string;
  emailVerified: boolean;
  name: string | null;
  groups: string[];
  passwordHash: string | null;
  disabled: boolean;
  createdAt: number;
  updatedAt: number;
}

export interface NewUser {
  /** Chosen by the caller (a passkey sign-up names the user in the credential first); default: a new UUID. */
  id?: string;
  email: string;
  emailVerified?: boolean;
  name?: string | null;
  groups?: string[];
  passwordHash?: string | null;
}
