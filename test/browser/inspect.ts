import type { Locator, Page } from 'playwright-core';
import { contrast } from './chromium.ts';

/*
 * What a user (or their assistive technology) gets from a page, read in the browser. The
 * callbacks run inside Chromium; the project compiles without lib "dom", so the few DOM
 * names they use are declared here, for this module only.
 */
interface DomStyle {
  color: string;
  backgroundColor: string;
  borderTopColor: string;
  fontSize: string;
  fontWeight: string;
  outlineStyle: string;
  outlineWidth: string;
  outlineColor: string;
  display: string;
  visibility: string;
}
interface DomNode {
  nodeValue: string | null;
  parentElement: DomElement | null;
}
interface DomElement {
  id: string;
  tagName: string;
  type?: string;
  value?: string;
  textContent: string | null;
  parentElement: DomElement | null;
  labels?: ArrayLike<{ textContent: string | null }> | null;
  getAttribute(name: string): string | null;
  getClientRects(): ArrayLike<unknown>;
  closest(selector: string): DomElement | null;
  blur(): void;
}
declare const document: {
  activeElement: DomElement | null;
  body: DomElement;
  documentElement: DomElement & { lang: string; scrollWidth: number; clientWidth: number };
  title: string;
  getElementById(id: string): DomElement | null;
  querySelectorAll(selector: string): ArrayLike<DomElement>;
  createTreeWalker(root: DomElement, whatToShow: number): { nextNode(): DomNode | null };
};
declare function getComputedStyle(el: DomElement): DomStyle;

export const focusedId = (page: Page): Promise<string | null> =>
  page.evaluate(() => document.activeElement?.id || null);

/** The texts of the elements an input's aria-describedby points at, in order. */
export const descriptions = (input: Locator): Promise<string[]> =>
  input.evaluate((el: DomElement) =>
    (el.getAttribute('aria-describedby') ?? '')
      .split(/\s+/)
      .filter(Boolean)
      .map((id) => document.getElementById(id)?.textContent?.trim() ?? `(missing #${id})`),
  );

export interface ContrastProblem {
  text: string;
  ratio: number;
  needed: number;
  color: string;
  background: string;
}

export interface Audit {
  lang: string;
  title: string;
  h1: string[];
  /** Visible inputs without a label. */
  unlabelled: string[];
  /** id → autocomplete of every visible input. */
  autocomplete: Record<string, string | null>;
  /** Text below 4.5:1 (3:1 when large), WCAG 1.4.3. */
  lowContrast: ContrastProblem[];
  /** Input borders below 3:1 against what surrounds them, WCAG 1.4.11. */
  faintFields: ContrastProblem[];
  /** The page is wider than the window: sideways scrolling on a phone. */
  overflowX: boolean;
  /** Background of <main>: transparent when the stylesheet did not apply (a CSP mismatch). */
  mainBackground: string;
}

/** Reads language, headings, labels, autocomplete, contrast and overflow of the current page. */
export async function audit(page: Page): Promise<Audit> {
  const raw = await page.evaluate(() => {
    const TRANSPARENT = /^rgba\(\d+, \d+, \d+, 0\)$|^transparent$/;
    const background = (start: DomElement | null): string => {
      for (let el = start; el; el = el.parentElement) {
        const bg = getComputedStyle(el).backgroundColor;
        if (!TRANSPARENT.test(bg)) return bg;
      }
      return getComputedStyle(document.documentElement).backgroundColor;
    };
    const visible = (el: DomElement) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
    const samples: { text: string; color: string; background: string; size: number; weight: number }[] = [];
    const seen = new Set<DomElement>();
    const walker = document.createTreeWalker(document.body, 4 /* NodeFilter.SHOW_TEXT */);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || seen.has(el) || !n.nodeValue?.trim() || !visible(el)) continue;
      seen.add(el);
      const s = getComputedStyle(el);
      samples.push({
        text: n.nodeValue.trim().slice(0, 60),
        color: s.color,
        background: background(el),
        size: parseFloat(s.fontSize),
        weight: Number(s.fontWeight),
      });
    }
    const inputs = Array.from(document.querySelectorAll('input, select, textarea')).filter(
      (el) => el.type !== 'hidden' && visible(el),
    );
    const fields = inputs.map((el) => {
      const s = getComputedStyle(el);
      if (el.value)
        samples.push({
          text: `value of #${el.id}`,
          color: s.color,
          background: background(el),
          size: parseFloat(s.fontSize),
          weight: Number(s.fontWeight),
        });
      return {
        id: el.id,
        labelled: Boolean(el.labels?.length && el.labels[0]!.textContent?.trim()),
        autocomplete: el.getAttribute('autocomplete'),
        border: s.borderTopColor,
        background: background(el.parentElement),
      };
    });
    const root = document.documentElement;
    return {
      lang: root.lang,
      title: document.title,
      h1: Array.from(document.querySelectorAll('h1')).map((h) => h.textContent?.trim() ?? ''),
      samples,
      fields,
      overflowX: root.scrollWidth > root.clientWidth,
      mainBackground: getComputedStyle(document.querySelectorAll('main')[0] ?? document.body).backgroundColor,
    };
  });
  const lowContrast: ContrastProblem[] = [];
  for (const s of raw.samples) {
    const large = s.size >= 24 || (s.size >= 18.66 && s.weight >= 700);
    const needed = large ? 3 : 4.5;
    const ratio = contrast(s.color, s.background);
    if (ratio < needed) lowContrast.push({ text: s.text, ratio, needed, color: s.color, background: s.background });
  }
  const faintFields: ContrastProblem[] = [];
  for (const f of raw.fields) {
    const ratio = contrast(f.border, f.background);
    if (ratio < 3)
      faintFields.push({ text: `border of #${f.id}`, ratio, needed: 3, color: f.border, background: f.background });
  }
  return {
    lang: raw.lang,
    title: raw.title,
    h1: raw.h1,
    unlabelled: raw.fields.filter((f) => !f.labelled).map((f) => f.id),
    autocomplete: Object.fromEntries(raw.fields.map((f) => [f.id, f.autocomplete])),
    lowContrast,
    faintFields,
    overflowX: raw.overflowX,
    mainBackground: raw.mainBackground,
  };
}

export interface FocusStop {
  element: string;
  outline: string;
  /** Contrast of the focus outline against the background it is drawn on. */
  ratio: number;
}

/** Tabs through the page from the top and reports how each focused element is shown. */
export async function tabThrough(page: Page, max = 20): Promise<FocusStop[]> {
  // Start from the top: a click on the page's corner moves the focus navigation starting point there.
  await page.evaluate(() => document.activeElement?.blur());
  await page.mouse.click(1, 1);
  const stops: FocusStop[] = [];
  const visited = new Set<string>();
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const stop = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const s = getComputedStyle(el);
      let bg = 'rgb(255, 255, 255)';
      for (let p = el.parentElement; p; p = p.parentElement) {
        const b = getComputedStyle(p).backgroundColor;
        if (!/^rgba\(\d+, \d+, \d+, 0\)$|^transparent$/.test(b)) {
          bg = b;
          break;
        }
      }
      const name = `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''} "${(el.textContent ?? '').trim().slice(0, 30)}"`;
      return {
        element: name,
        outline: `${s.outlineStyle} ${s.outlineWidth} ${s.outlineColor}`,
        style: s.outlineStyle,
        width: parseFloat(s.outlineWidth),
        color: s.outlineColor,
        bg,
      };
    });
    if (!stop || visited.has(stop.element)) break;
    visited.add(stop.element);
    const shown = stop.style !== 'none' && stop.width >= 2;
    stops.push({ element: stop.element, outline: stop.outline, ratio: shown ? contrast(stop.color, stop.bg) : 0 });
  }
  return stops;
}

/** The colour behind an element as drawn: its own background or the nearest ancestor's. */
export const backgroundOf = (target: Locator): Promise<string> =>
  target.evaluate((el: DomElement) => {
    for (let e: DomElement | null = el; e; e = e.parentElement) {
      const bg = getComputedStyle(e).backgroundColor;
      if (!/^rgba\(\d+, \d+, \d+, 0\)$|^transparent$/.test(bg)) return bg;
    }
    return getComputedStyle(document.documentElement).backgroundColor;
  });
