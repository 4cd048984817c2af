import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Look, RequestContext } from '../http/context.ts';
import { html } from './html.ts';
import { CSS, CSS_HASH } from './styles.ts';

/**
 * `branding: {logo, color, links}` of an app (the one naming its site, as for `title`): its pages
 * show the logo above the title, use the colour for buttons and links, and end with the links. The stylesheet stays one
 * inline <style> allowed by its hash: the site's is the plain one with the colours appended
 * (hover, text on buttons and the dark-mode variant derived from the one colour), its hash
 * replaces the plain one in the CSP of the site's pages (see lookPage). The logo is served by
 * Gatehouse, under a name with its content hash (cached for good; a new logo, a new name).
 */

export const PLAIN_LOOK: Look = { css: CSS, cssHash: CSS_HASH, logo: null, footer: '' };

export class BrandError extends Error {
  /** The config key to fix: branding.logo, apps[1].branding.logo. */
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.key = key;
  }
}

/** The most a logo may weigh: it is sent with the first view of every page of the site. */
export const MAX_LOGO_BYTES = 256 * 1024;

/** The image types a logo may be, by their first bytes; SVG by its root element. */
function imageType(body: Buffer): { type: string; ext: string } | undefined {
  if (body.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])))
    return { type: 'image/png', ext: 'png' };
  if (body[0] === 0xff && body[1] === 0xd8 && body[2] === 0xff) return { type: 'image/jpeg', ext: 'jpg' };
  if (body.subarray(0, 4).toString('latin1') === 'RIFF' && body.subarray(8, 12).toString('latin1') === 'WEBP')
    return { type: 'image/webp', ext: 'webp' };
  if (/^GIF8[79]a/.test(body.subarray(0, 6).toString('latin1'))) return { type: 'image/gif', ext: 'gif' };
  // An SVG: XML (a declaration, comments, a doctype) whose root element is <svg.
  const text = body
    .subarray(0, 4096)
    .toString('utf8')
    .replace(/^\uFEFF/, '');
  if (/^\s*(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*(<!DOCTYPE[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*<svg[\s>]/i.test(text))
    return { type: 'image/svg+xml', ext: 'svg' };
  return undefined;
}

type Rgb = [number, number, number];
const rgb = (hex: string): Rgb => [1, 3, 5].map((i) => Number.parseInt(hex.slice(i, i + 2), 16)) as Rgb;
const hexOf = (c: Rgb) => `#${c.map((v) => Math.round(v).toString(16).padStart(2, '0')).join('')}`;
const mix = (a: Rgb, b: Rgb, t: number): Rgb => [0, 1, 2].map((i) => a[i]! + (b[i]! - a[i]!) * t) as Rgb;

/** WCAG 2's relative luminance and contrast ratio. */
function luminance(c: Rgb): number {
  const [r, g, b] = c.map((v) => {
    const s = v / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  }) as Rgb;
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
export function contrast(a: string, b: string): number {
  const [x, y] = [luminance(rgb(a)), luminance(rgb(b))];
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}

/** The cards pages are drawn on (styles.ts: --card), light and dark. */
export const CARD = { light: '#ffffff', dark: '#1c1f24' } as const;
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];

/** White or near-black, whichever reads better on `bg`. */
const textOn = (bg: string) => (contrast('#ffffff', bg) >= contrast('#111111', bg) ? '#ffffff' : '#111111');

/**
 * The colour variables of a brand colour: as given in light mode (hover darker), and in dark mode
 * lightened until links in it read on the dark card (4.5:1), so one colour serves both.
 */
export function accentCss(color: string): string {
  const c = rgb(color.toLowerCase());
  const hover = hexOf(mix(c, BLACK, 0.15));
  let dark = c;
  for (let t = 0.1; contrast(hexOf(dark), CARD.dark) < 4.5 && t <= 1; t += 0.1) dark = mix(c, WHITE, t);
  const darkHex = hexOf(dark);
  return (
    `:root{--accent:${hexOf(c)};--accent-hover:${hover};--accent-text:${textOn(hexOf(c))}}` +
    `@media (prefers-color-scheme:dark){:root{--accent:${darkHex};--accent-hover:${hexOf(mix(dark, WHITE, 0.25))};--accent-text:${textOn(darkHex)}}}\n`
  );
}

/**
 * A site's look from its app's `branding` (`at`: the config key, to name in errors; `prefix`: own
 * routes' prefix, where the logo is served). Reads the logo file.
 */
export function makeLook(
  branding: { logo?: string; color?: string; links?: { text: string; url: string }[] } | null,
  at: string,
  prefix: string,
): Look {
  if (!branding || (!branding.logo && !branding.color && !branding.links?.length)) return PLAIN_LOOK;
  let logo: Look['logo'] = null;
  if (branding.logo) {
    let body: Buffer;
    try {
      body = readFileSync(branding.logo);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new BrandError(
        `${at}.logo`,
        `cannot read ${branding.logo} (${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message})`,
      );
    }
    if (body.length > MAX_LOGO_BYTES)
      throw new BrandError(`${at}.logo`, `${branding.logo} is ${Math.ceil(body.length / 1024)} KiB: at most 256 KiB`);
    const kind = imageType(body);
    if (!kind) throw new BrandError(`${at}.logo`, `${branding.logo} is not a PNG, JPEG, WebP, GIF or SVG image`);
    const file = `logo-${hash('sha256', body, 'base64url').slice(0, 16)}.${kind.ext}`;
    logo = { file, url: `${prefix}/brand/${file}`, type: kind.type, body };
  }
  const css = branding.color ? CSS + accentCss(branding.color) : CSS;
  const footer = branding.links?.length
    ? html`<footer class="links">${branding.links.map((l, i) => html`${i ? ' · ' : ''}<a href="${l.url}" rel="noopener">${l.text}</a>`)}</footer>\n`
        .value
    : '';
  return { css, cssHash: `'sha256-${hash('sha256', css, 'base64')}'`, logo, footer };
}

/**
 * A page of the site as its look has it: its stylesheet, and the logo above the title; and the
 * CSP with the stylesheet's hash in place of the plain one. The plain look changes nothing.
 */
export function lookPage(look: Look, page: string, csp: string): { page: string; csp: string } {
  if (look === PLAIN_LOOK) return { page, csp };
  // The plain stylesheet where the look has its own; the CSP then allows that one only.
  let branded = page.replace(`<style>${CSS}</style>`, () => `<style>${look.css}</style>`);
  if (look.footer) branded = branded.replace('</main>', () => `${look.footer}</main>`);
  if (look.logo)
    branded = branded.replace(
      '<p class="app">',
      () => `<img class="logo" src="${look.logo!.url}" alt="">\n<p class="app">`,
    );
  return { page: branded, csp: csp.replace(CSS_HASH, look.cssHash) };
}

/** GET <prefix>/brand/<file>: the site's logo under its current name; anything else 404. */
export function serveLogo(ctx: RequestContext, file: string | undefined): void {
  const logo = ctx.site.look.logo;
  if (!logo || file !== logo.file) {
    ctx.res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    return void ctx.res.end('Not Found\n');
  }
  ctx.res.writeHead(200, {
    'content-type': logo.type,
    'content-length': logo.body.length,
    'cache-control': 'public, max-age=31536000, immutable',
    'x-content-type-options': 'nosniff',
    'cross-origin-resource-policy': 'same-origin',
    // An SVG opened on its own runs nothing and loads nothing.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; sandbox",
  });
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : logo.body);
}
