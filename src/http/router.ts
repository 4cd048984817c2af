/**
 * Gatehouse's own routes, below the prefix: exact paths and ":param" segments. HEAD is
 * served by the GET handler. No framework: a map lookup is all the hot path needs.
 */
export type Params = Record<string, string>;

interface Entry<H> {
  parts: string[];
  methods: Map<string, H>;
}

export type Match<H> = { handler: H; params: Params } | { allowed: string[] } | undefined;

export class Router<H> {
  private readonly exact = new Map<string, Map<string, H>>();
  private readonly patterns: Entry<H>[] = [];

  add(methods: string | string[], path: string, handler: H): this {
    const list = Array.isArray(methods) ? methods : [methods];
    if (path.includes(':')) {
      const parts = path.split('/');
      let entry = this.patterns.find((e) => e.parts.join('/') === path);
      if (!entry) {
        entry = { parts, methods: new Map() };
        this.patterns.push(entry);
      }
      for (const m of list) entry.methods.set(m, handler);
    } else {
      let byMethod = this.exact.get(path);
      if (!byMethod) {
        byMethod = new Map();
        this.exact.set(path, byMethod);
      }
      for (const m of list) byMethod.set(m, handler);
    }
    return this;
  }

  match(method: string, path: string): Match<H> {
    let byMethod = this.exact.get(path);
    let params: Params = {};
    if (!byMethod) {
      const parts = path.split('/');
      for (const e of this.patterns) {
        if (e.parts.length !== parts.length) continue;
        const p: Params = {};
        let ok = true;
        for (let i = 0; i < parts.length && ok; i++) {
          const want = e.parts[i]!;
          if (want.startsWith(':')) {
            if (!/^[A-Za-z0-9._-]{1,64}$/.test(parts[i]!)) ok = false;
            else p[want.slice(1)] = parts[i]!;
          } else ok = want === parts[i];
        }
        if (ok) {
          byMethod = e.methods;
          params = p;
          break;
        }
      }
    }
    if (!byMethod) return undefined;
    const handler = byMethod.get(method) ?? (method === 'HEAD' ? byMethod.get('GET') : undefined);
    if (handler) return { handler, params };
    const allowed = [...byMethod.keys()];
    if (allowed.includes('GET')) allowed.push('HEAD');
    return { allowed };
  }
}
