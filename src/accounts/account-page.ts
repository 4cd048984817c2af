import { redirect, sendJson, wantsHtml } from '../http/respond.ts';
import {
  accountPage,
  cspWithFormAction,
  cspWithScripts,
  messagePage,
  type AccountSectionView,
} from '../pages/index.ts';
import type { ActiveSession, Sessions } from '../sessions/index.ts';
import type { FormTools } from '../pages/kit.ts';
import type { RequestContext } from '../http/context.ts';
import { paths } from '../http/paths.ts';

/** Renders one section of /.auth/account for the signed-in session, or nothing. */
export type AccountSection = (
  ctx: RequestContext,
  active: ActiveSession,
  csrf: string,
) => Promise<AccountSectionView | undefined>;

/**
 * One of the account page's forms refused as a whole (the feature is off or cannot work here):
 * JSON `{error, message}`, or a page with the message and a link back to the account page.
 */
export function refuseAccountForm(
  tools: FormTools,
  ctx: RequestContext,
  json: boolean,
  o: { status: number; error: string; heading: string; message: string },
): void {
  if (json) return sendJson(ctx.res, o.status, { error: o.error, message: o.message });
  tools.html(
    ctx,
    o.status,
    messagePage({
      appTitle: ctx.site.title,
      heading: o.heading,
      message: o.message,
      link: { href: tools.url(ctx, paths.account), text: 'Back to your account' },
    }),
  );
}

/** The "must be signed in" check of the account page's own forms (password change, linking, ...). */
export interface SessionGate {
  requireSession(ctx: RequestContext): Promise<ActiveSession | undefined>;
}

/**
 * /.auth/account: the signed-in user's page. Features render their own sections (email address,
 * linked identities, change password, devices and apps), added in server/routes.ts
 * (accountSections), and have their own POST routes; this module only owns the page and the
 * "must be signed in" rule.
 */
export class AccountPage implements SessionGate {
  private readonly s: { prefix: string; sessions: Sessions };
  private readonly tools: FormTools;
  private readonly sections: { order: number; render: AccountSection; formActions?: () => string[] }[] = [];

  constructor(deps: { prefix: string; sessions: Sessions }, tools: FormTools) {
    this.s = deps;
    this.tools = tools;
  }

  /** `formActions`: origins the section's forms are redirected to (added to the page's CSP). */
  addSection(order: number, render: AccountSection, formActions?: () => string[]): this {
    this.sections.push({ order, render, formActions });
    this.sections.sort((a, b) => a.order - b.order);
    return this;
  }

  /** The session of a signed-in browser; otherwise answers (login redirect or 401) and returns undefined. */
  async requireSession(ctx: RequestContext): Promise<ActiveSession | undefined> {
    const found = await this.s.sessions.lookup(ctx.req, ctx.site.session, ctx.site.origin);
    if (found.state === 'active') {
      ctx.userId = found.active.user.id;
      return found.active;
    }
    const login = `${ctx.site.origin}${this.s.prefix}${paths.login}?rd=${encodeURIComponent(`${this.s.prefix}${paths.account}`)}`;
    if (ctx.req.method === 'GET' && wantsHtml(ctx.req)) redirect(ctx.res, 302, login);
    else
      sendJson(
        ctx.res,
        401,
        { error: 'unauthenticated', message: 'Sign in to manage your account.', login },
        { 'www-authenticate': `Bearer realm="${ctx.site.origin}"` },
      );
    return undefined;
  }

  async page(ctx: RequestContext): Promise<void> {
    const active = await this.requireSession(ctx);
    if (!active) return;
    const { token, cookies } = this.tools.csrf(ctx);
    const views = (await Promise.all(this.sections.map((s) => s.render(ctx, active, token)))).filter(
      (v): v is AccountSectionView => Boolean(v),
    );
    const origins = [...new Set(this.sections.flatMap((s) => s.formActions?.() ?? []))];
    this.tools.html(
      ctx,
      200,
      accountPage({
        appTitle: ctx.site.title,
        email: active.user.email,
        name: active.user.name,
        notice: views.find((v) => v.notice)?.notice,
        sections: views,
        signOutUrl: `${this.s.prefix}${paths.logout}`,
      }),
      cookies,
      {
        'content-security-policy': views.some((v) => v.scripts)
          ? cspWithScripts(cspWithFormAction(origins))
          : cspWithFormAction(origins),
      },
    );
  }
}
