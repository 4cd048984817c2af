import { NotAllowedError, NotFoundError } from '@backstage/errors';
import { createSignInResolverFactory, type SignInInfo } from '@backstage/plugin-auth-node';
import { z } from 'zod/v3';
import { verifiedEmail, type GatehouseResult } from './profile.ts';

/** The User entity annotation that holds the Gatehouse user id (`gatehouse users list` shows it). */
export const USER_ID_ANNOTATION = 'gatehouse/user-id';

type Info = SignInInfo<GatehouseResult>;

/** A resolver that does not apply to this user: the next configured resolver is tried. */
const notApplicable = (why: string) => new NotFoundError(why);

/**
 * The sign-in resolvers of the `gatehouse` provider, for `signIn.resolvers` in app-config.yaml.
 * Addresses count only when Gatehouse says they are verified; none of them signs in a user who
 * is not in the catalog.
 */
export const gatehouseSignInResolvers = {
  /** The User entity whose `gatehouse/user-id` annotation is the Gatehouse user id (`sub`). */
  userIdMatchingUserEntityAnnotation: createSignInResolverFactory({
    create() {
      return async (info: Info, ctx) =>
        ctx.signInWithCatalogUser({ annotations: { [USER_ID_ANNOTATION]: info.result.user.id } });
    },
  }),

  /** The User entity whose `spec.profile.email` is the user's verified address. */
  emailMatchingUserEntityProfileEmail: createSignInResolverFactory({
    create() {
      return async (info: Info, ctx) => {
        const email = verifiedEmail(info.result.user);
        if (!email) throw notApplicable('The Gatehouse user has no verified email address');
        return ctx.signInWithCatalogUser({ filter: { 'spec.profile.email': email } });
      };
    },
  }),

  /**
   * The User entity named like the local part of the user's verified address, for addresses
   * of `allowedDomains` only (required: without it anyone who verifies `alice@` at any domain
   * would be Backstage's `alice`).
   */
  emailLocalPartMatchingUserEntityName: createSignInResolverFactory({
    optionsSchema: z.object({
      allowedDomains: z.array(z.string().min(1)).min(1, 'allowedDomains must name at least one domain'),
    }),
    create({ allowedDomains }) {
      const allowed = new Set(allowedDomains.map((d) => d.toLowerCase()));
      return async (info: Info, ctx) => {
        const email = verifiedEmail(info.result.user);
        if (!email) throw notApplicable('The Gatehouse user has no verified email address');
        const at = email.lastIndexOf('@');
        const localPart = email.slice(0, at);
        if (at < 1 || !allowed.has(email.slice(at + 1).toLowerCase()))
          throw new NotAllowedError('Sign-in user email is not from an allowed domain');
        return ctx.signInWithCatalogUser({ entityRef: { name: localPart } });
      };
    },
  }),
};
