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
  email: string;
  emailVerified?: boolean;
  name?: string | null;
  groups?: string[];
  passwordHash?: string | null;
}
