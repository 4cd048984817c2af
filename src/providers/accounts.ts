import { normalizeEmail } from '../config/email.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/index.ts';
import { StoreConflictError, type Identity, type Store, type User } from '../store/index.ts';
import type { FlowError, ProviderClient } from './client.ts';
import type { ProviderProfile } from './profile.ts';

export type Resolved =
  | { ok: true; user: User; identity: Identity; how: 'existing' | 'linked_by_email' | 'created' }
  | { ok: false; code: FlowError; email?: string };

/**
 * Who a provider's profile is in Gatehouse. The key is always (issuer, subject), never an
 * email (security.md #37). An identity seen before signs in its user. A new one may join an
 * existing user by email only when the provider's config allows it AND both the provider's
 * and the user's addresses are verified; otherwise a first sign-in creates a user, if
 * registration (the provider's, else accounts.registration) is open, the address is
 * verified, and its domain is one of accounts.allowedDomains (when set).
 */
export class ProviderAccounts {
  private readonly store: Store;
  private readonly accounts: Config['accounts'];
  private readonly logger: Logger;

  constructor(store: Store, accounts: Config['accounts'], logger: Logger) {
    this.store = store;
    this.accounts = accounts;
    this.logger = logger;
  }

  /** Who the profile is, and with providers[].syncGroups their groups made the provider's. */
  async resolve(provider: ProviderClient, profile: ProviderProfile): Promise<Resolved> {
    const r = await this.find(provider, profile);
    return r.ok ? { ...r, user: await this.syncGroups(provider, r.user, profile) } : r;
  }

  /**
   * providers[].syncGroups: the user's groups become those the provider sent at this sign-in or
   * link, when they differ (logged `groups_synced`, with what was added and removed). The user as
   * it now is.
   */
  async syncGroups(provider: ProviderClient, user: User, profile: ProviderProfile): Promise<User> {
    if (!provider.config.syncGroups) return user;
    return (await this.setGroups(provider, user, profile.groups, 'sign_in')) ?? user;
  }

  /** syncGroups at a refresh of the sign-in's tokens (revalidate, tokenRelay): the groups the provider states now. */
  async syncGroupsAtRefresh(provider: ProviderClient, userId: string, groups: string[]): Promise<void> {
    if (!provider.config.syncGroups) return;
    const user = await this.store.users.get(userId);
    if (user) await this.setGroups(provider, user, groups, 'refresh');
  }

  private async setGroups(
    provider: ProviderClient,
    user: User,
    stated: string[],
    at: 'sign_in' | 'refresh',
  ): Promise<User | undefined> {
    const groups = [...new Set(stated)];
    const added = groups.filter((g) => !user.groups.includes(g));
    const removed = user.groups.filter((g) => !groups.includes(g));
    if (!added.length && !removed.length) return user;
    const after = await this.store.users.update(user.id, { groups });
    this.logger.info(
      { event: 'groups_synced', userId: user.id, provider: provider.id, at, added, removed },
      `the user's groups were set from ${provider.name}`,
    );
    return after ?? undefined;
  }

  private async find(provider: ProviderClient, profile: ProviderProfile): Promise<Resolved> {
    const known = await this.signInKnown(profile);
    if (known) return known;

    const email = normalizeEmail(profile.email) ?? null;
    const verified = Boolean(email) && profile.emailVerified;
    if (email && verified && provider.config.linkByEmail) {
      const existing = await this.store.users.getByEmail(email);
      if (existing?.emailVerified) {
        try {
          const identity = await this.store.identities.create(newIdentity(provider, profile, existing.id, email));
          this.logger.info(
            { event: 'identity_linked', userId: existing.id, provider: provider.id, by: 'verified_email' },
            'identity linked by verified email',
          );
          return { ok: true, user: existing, identity, how: 'linked_by_email' };
        } catch (err) {
          if (!(err instanceof StoreConflictError)) throw err;
          return (await this.signInKnown(profile)) ?? { ok: false, code: 'identity_taken' };
        }
      }
    }

    const registration = provider.config.registration ?? this.accounts.registration;
    // By invitation: a first sign-in makes no account either (invitations are accepted with a password).
    if (registration !== 'open') return { ok: false, code: 'registration_closed', email: email ?? undefined };
    if (!email) return { ok: false, code: 'no_email' };
    if (!verified) return { ok: false, code: 'email_unverified', email };
    const domains = this.accounts.allowedDomains;
    if (domains && !domains.some((d) => email.endsWith(`@${d.toLowerCase()}`)))
      return { ok: false, code: 'domain_not_allowed', email };
    try {
      const { user, identity } = await this.store.identities.createWithUser(
        { email, emailVerified: true, name: profile.name },
        newIdentity(provider, profile, '', email),
      );
      this.logger.info(
        { event: 'register', userId: user.id, method: 'provider', provider: provider.id },
        'user created at first sign-in',
      );
      return { ok: true, user, identity, how: 'created' };
    } catch (err) {
      if (!(err instanceof StoreConflictError)) throw err;
      // Either the same identity won a race (sign it in), or the address belongs to an
      // account this identity may not join: its owner signs in as before and links.
      return (await this.signInKnown(profile)) ?? { ok: false, code: 'email_taken', email };
    }
  }

  private async signInKnown(profile: ProviderProfile): Promise<Resolved | undefined> {
    const identity = await this.store.identities.find(profile.issuer, profile.subject);
    if (!identity) return undefined;
    const user = await this.store.users.get(identity.userId);
    if (!user) return undefined;
    const updated = await this.store.identities.update(identity.id, { ...details(profile), lastLoginAt: Date.now() });
    return { ok: true, user, identity: updated ?? identity, how: 'existing' };
  }

  /** Links the profile's identity to a signed-in user (from /.auth/account). */
  async link(
    userId: string,
    provider: ProviderClient,
    profile: ProviderProfile,
  ): Promise<{ ok: true; identity: Identity; already: boolean } | { ok: false; code: FlowError }> {
    const existing = await this.store.identities.find(profile.issuer, profile.subject);
    if (existing) {
      if (existing.userId !== userId) return { ok: false, code: 'identity_taken' };
      return {
        ok: true,
        identity:
          (await this.store.identities.update(existing.id, { ...details(profile), lastLoginAt: Date.now() })) ??
          existing,
        already: true,
      };
    }
    try {
      const identity = await this.store.identities.create(
        newIdentity(provider, profile, userId, normalizeEmail(profile.email) ?? null),
      );
      return { ok: true, identity, already: false };
    } catch (err) {
      if (!(err instanceof StoreConflictError)) throw err;
      return { ok: false, code: 'identity_taken' };
    }
  }
}

function details(profile: ProviderProfile) {
  const email = normalizeEmail(profile.email) ?? null;
  return { email, emailVerified: Boolean(email) && profile.emailVerified, name: profile.name, groups: profile.groups };
}

function newIdentity(provider: ProviderClient, profile: ProviderProfile, userId: string, email: string | null) {
  return {
    userId,
    provider: provider.id,
    issuer: profile.issuer,
    subject: profile.subject,
    email,
    emailVerified: Boolean(email) && profile.emailVerified,
    name: profile.name,
    groups: profile.groups,
  };
}
