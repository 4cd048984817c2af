import { normalizeTarget } from '../http/target.ts';
import { hostKey } from '../http/protocol.ts';
import { appFor, type App, type Site } from '../sites/index.ts';

/**
 * Apps as OAuth protected resources (RFC 8707, RFC 9728). Each app's resource identifier is
 * its origin plus its path prefix (or publicUrl's base path), without a trailing slash:
 * https://app.example.com, or https://example.com/api for an app under /api. That identifier is the `aud` of every
 * access token for the app, and a bearer token is accepted only where its `aud` is the
 * app's own. A client may name any URL the app serves as `resource`
 * (https://app.example.com/mcp): it resolves to the app, and the token's `aud` is the app's
 * identifier.
 */
export class Resources {
  private readonly sites: Map<string, Site>;
  private readonly prefix: string;
  private readonly byApp = new Map<App, string>();
  private readonly all: App[];

  constructor(sites: Map<string, Site>, prefix: string) {
    this.sites = sites;
    this.prefix = prefix.toLowerCase();
    this.all = [...sites.values()].flatMap((s) => s.apps);
    for (const app of this.all) this.byApp.set(app, app.site.origin + (app.pathPrefix || app.site.base));
  }

  /** Every app's resource identifier. */
  ids(): string[] {
    return [...this.byApp.values()];
  }

  /** The app's resource identifier: the `aud` of its access tokens. */
  idOf(app: App): string {
    return this.byApp.get(app)!;
  }

  /** The app a resource indicator names, or undefined (RFC 8707 invalid_target). */
  resolve(resource: string): App | undefined {
    if (resource.length > 2048 || resource.includes('#')) return undefined;
    let u: URL;
    try {
      u = new URL(resource);
    } catch {
      return undefined;
    }
    if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.username || u.password || u.search) return undefined;
    const site = this.sites.get(hostKey(u.host, u.protocol === 'https:'));
    if (!site || site.origin !== u.origin) return undefined;
    const target = normalizeTarget(u.pathname);
    if (!target.ok || this.isOwn(target.path)) return undefined;
    return appFor(site, target.path);
  }

  /** The app when a request names none: the only one there is. */
  sole(): App | undefined {
    return this.all.length === 1 ? this.all[0] : undefined;
  }

  /**
   * The app whose RFC 9728 metadata lives at <base>/.well-known/oauth-protected-resource<suffix>
   * on this site, and the resource identifier that document names: the app's own for the
   * plain address, else exactly the one the suffix spells (RFC 9728 §3.3).
   */
  forMetadata(site: Site, suffix: string): { app: App; resource: string } | undefined {
    if (suffix === '') {
      const app = appFor(site, site.base || '/');
      return app && { app, resource: this.idOf(app) };
    }
    const target = normalizeTarget(suffix);
    const path = site.base + suffix;
    if (!target.ok || target.path !== suffix || this.isOwn(path)) return undefined;
    const app = appFor(site, path);
    return app && { app, resource: site.origin + path };
  }

  /** Where the app's protected-resource metadata is (the WWW-Authenticate resource_metadata). */
  metadataUrl(app: App): string {
    const site = app.site;
    return `${site.origin}${site.base}/.well-known/oauth-protected-resource${(app.pathPrefix || site.base).slice(site.base.length)}`;
  }

  private isOwn(path: string): boolean {
    const lower = path.toLowerCase();
    return lower === this.prefix || lower.startsWith(`${this.prefix}/`);
  }
}
