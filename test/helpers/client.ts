import { Agent, request, type Dispatcher } from 'undici';

const agent = new Agent({ keepAliveTimeout: 1000, connections: 64 });

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json<T = any>(): T;
  /** All Set-Cookie values. */
  cookies: string[];
  location?: string;
}

/**
 * A minimal browser-like HTTP client: a cookie jar (host-only, by name), no automatic
 * redirects, and helpers for Gatehouse's forms. Built on undici.request so tests can set
 * any header, Host included.
 */
export class Client {
  readonly base: string;
  readonly jar = new Map<string, string>();
  defaultHeaders: Record<string, string> = {};
  private readonly dispatcher: Dispatcher;

  /** `dispatcher`: e.g. an Agent that trusts a test certificate (helpers/tls.ts). */
  constructor(base: string, o: { dispatcher?: Dispatcher } = {}) {
    this.base = base;
    this.dispatcher = o.dispatcher ?? agent;
  }

  cookieHeader(): string | undefined {
    return this.jar.size ? [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ') : undefined;
  }

  async fetch(
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: string | Buffer; cookies?: boolean } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...this.defaultHeaders, ...init.headers };
    const cookie = init.cookies === false ? undefined : this.cookieHeader();
    if (cookie && !headers.cookie) headers.cookie = cookie;
    const url = new URL(path, this.base);
    const res = await request(url, {
      method: (init.method ?? 'GET') as 'GET',
      headers,
      body: init.body,
      dispatcher: this.dispatcher,
    });
    const text = await res.body.text();
    const setCookie = res.headers['set-cookie'];
    const cookies = setCookie === undefined ? [] : Array.isArray(setCookie) ? setCookie : [setCookie];
    for (const c of cookies) {
      const [pair, ...attrs] = c.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a));
      if (expired || value === '') this.jar.delete(name);
      else this.jar.set(name, value);
    }
    return {
      status: res.statusCode,
      headers: res.headers as Record<string, string | string[] | undefined>,
      text,
      json: () => JSON.parse(text),
      cookies,
      location: res.headers.location as string | undefined,
    };
  }

  get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    return this.fetch(path, { headers });
  }

  html(path: string, headers: Record<string, string> = {}): Promise<Response> {
    return this.fetch(path, { headers: { accept: 'text/html,application/xhtml+xml', ...headers } });
  }

  postJson(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return this.fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  }

  postForm(path: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
    return this.fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', ...headers },
      body: new URLSearchParams(fields).toString(),
    });
  }

  /** GETs a page with a form, then submits it with its hidden fields (csrf, rd) plus `fields`. */
  async submitForm(
    pagePath: string,
    fields: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    const page = await this.html(pagePath);
    const form = /<form method="post" action="([^"]+)"/.exec(page.text);
    if (!form) throw new Error(`no form on ${pagePath} (status ${page.status})`);
    const hidden = Object.fromEntries(
      [...page.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [
        m[1]!,
        decodeEntities(m[2]!),
      ]),
    );
    return this.postForm(decodeEntities(form[1]!), { ...hidden, ...fields }, headers);
  }
}

export function decodeEntities(s: string): string {
  return s
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'");
}

let n = 0;
/** A fresh address per call, unique across parallel test files. */
export function uniqueEmail(tag = 'user'): string {
  return `${tag}-${process.pid}-${Date.now().toString(36)}-${n++}@example.com`;
}

export const PASSWORD = 'a long enough passphrase';

export async function registerJson(
  client: Client,
  email = uniqueEmail(),
  password = PASSWORD,
): Promise<{ id: string; email: string }> {
  const res = await client.postJson('/.auth/register', { email, password });
  if (res.status !== 201) throw new Error(`register failed: ${res.status} ${res.text}`);
  return res.json().user;
}
