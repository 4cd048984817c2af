import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node, type Scalar } from 'yaml';
import type { z } from 'zod';
import { ConfigSchema, type Config } from './schema.ts';
import { closest } from './suggest.ts';

export interface ConfigProblem {
  /** Dotted key, e.g. "apps[1].upstream" */
  key: string;
  line?: number;
  message: string;
}

export class ConfigError extends Error {
  readonly problems: ConfigProblem[];
  readonly file: string;
  constructor(file: string, problems: ConfigProblem[]) {
    super(formatProblems(file, problems));
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}

export function formatProblems(file: string, problems: ConfigProblem[]): string {
  const lines = problems.map((p) => `  ${file}${p.line ? `:${p.line}` : ''}  ${p.key || '(top level)'}: ${p.message}`);
  return `Invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}`;
}

/**
 * `${NAME}`, `${NAME:-default}`, `${file:PATH}` and `${credential:NAME}`, in one pass (a file's or a
 * variable's text is never read for further references).
 */
const REF = /\$\{(?:file:([^}]+)|credential:([A-Za-z0-9_.@-]+)|([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^}\\]|\\.)*))?)\}/g;
/** A secret file is small: anything larger is not the file meant. */
const MAX_SECRET_FILE = 64 * 1024;

/**
 * The text of a secret file for `${file:PATH}` (PATH relative to the config file's directory) or
 * `${credential:NAME}` (systemd's LoadCredential: $CREDENTIALS_DIRECTORY/NAME), without its trailing
 * newlines; or why it cannot be read (never its content).
 */
function secretFile(path: string, configFile: string): { text: string } | { problem: string } {
  const full = isAbsolute(path) ? path : resolve(dirname(configFile), path);
  let bytes: Buffer;
  try {
    bytes = readFileSync(full);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { problem: `cannot read ${full} (${e.code === 'ENOENT' ? 'no such file' : (e.code ?? e.message)})` };
  }
  if (bytes.length > MAX_SECRET_FILE) return { problem: `${full} is larger than 64 KiB: not a secret file` };
  return { text: bytes.toString('utf8').replace(/(\r?\n)+$/, '') };
}

/**
 * Loads and validates a config file. `${NAME}` and `${NAME:-default}` are replaced inside
 * YAML scalars after parsing, so a variable's value can never add keys or change structure; so are
 * `${file:PATH}` and `${credential:NAME}` with a secret file's text (Docker and Kubernetes secrets,
 * systemd credentials), read at every load and reload.
 * A scalar takes the type the schema expects (see coerce): a port written "8090", or
 * "${PORT}", is the number. Throws ConfigError naming key and line for every problem.
 */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(file, [
      { key: '', message: e.code === 'ENOENT' ? 'file not found' : `cannot read the file (${e.code ?? e.message})` },
    ]);
  }
  return parseConfig(text, file, env);
}

export function parseConfig(text: string, file = 'gatehouse.yaml', env: NodeJS.ProcessEnv = process.env): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const lineOf = (node: Node | null | undefined) => (node?.range ? lineCounter.linePos(node.range[0]).line : undefined);

  if (doc.errors.length) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({
        key: '',
        line: lineCounter.linePos(e.pos[0]).line,
        message: `YAML: ${e.message.split('\n')[0]}`,
      })),
    );
  }

  const problems: ConfigProblem[] = [];
  /** The text of scalars that are one whole ${NAME}: what the variable held. */
  const fromEnv = new WeakMap<Scalar, string>();
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      const raw = node.value;
      const missing: string[] = [];
      const unreadable: string[] = [];
      const replaced = raw.replace(
        REF,
        (_m, path: string | undefined, credential: string | undefined, name: string, def: string | undefined) => {
          if (path !== undefined || credential !== undefined) {
            const dir = env.CREDENTIALS_DIRECTORY;
            if (credential !== undefined && !dir) {
              unreadable.push(`\${credential:${credential}} needs CREDENTIALS_DIRECTORY (systemd's LoadCredential=)`);
              return '';
            }
            const read = secretFile(path ?? join(dir!, credential!), file);
            if ('problem' in read) unreadable.push(read.problem);
            return 'text' in read ? read.text : '';
          }
          const value = env[name];
          if (value !== undefined && value !== '') return value;
          if (def !== undefined) return def.replace(/\\(.)/g, '$1');
          missing.push(name);
          return '';
        },
      );
      if (missing.length || unreadable.length) {
        problems.push({
          key: keyPathOf(doc, node) ?? '',
          line: lineOf(node),
          message: missing.length
            ? `environment variable ${missing.join(', ')} is not set (use \${${missing[0]}:-default} for a default)`
            : unreadable.join('; '),
        });
        return;
      }
      // One whole reference, quoted or not, reads as YAML would read the text (a number,
      // true or false); coerce() turns it back into the text where the schema wants text.
      if (/^\$\{[^}]*\}$/.test(raw)) {
        const typed = typedScalar(replaced);
        node.value = typeof typed === 'number' || typeof typed === 'boolean' ? typed : replaced;
        fromEnv.set(node, replaced);
      } else {
        node.value = replaced;
      }
    },
  });
  if (problems.length) throw new ConfigError(file, problems);

  const data: unknown = doc.toJS() ?? {};
  const textOf = (path: PropertyKey[]) => {
    const node = doc.getIn(path, true);
    return isScalar(node) ? (fromEnv.get(node) ?? node.source) : undefined;
  };
  // UNWORDED stands in for zod's own messages; the schema's messages win over it.
  const validate = () => ConfigSchema.safeParse(data, { reportInput: true, error: () => UNWORDED });
  let result = validate();
  for (let round = 0; !result.success && round < 10 && coerce(result.error.issues, data, textOf); round++)
    result = validate();
  if (!result.success) throw new ConfigError(file, issuesToProblems(result.error.issues, doc, data, lineOf));
  return result.data;
}

/** How YAML reads a piece of text on its own: a number, a boolean, or undefined for anything else. */
function typedScalar(text: string): unknown {
  const doc = parseDocument(text);
  return !doc.errors.length && isScalar(doc.contents) ? doc.contents.value : undefined;
}

/**
 * A scalar of the wrong type becomes the type the schema expects when its text reads as that
 * type, as in oauth2-proxy's and Pomerium's config files: "8090" where a number is expected
 * is 8090, "true" (or yes, on, no, off) where true or false is expected is that boolean, and
 * a number or boolean where text is expected is the text as written (clientId: 0123 is
 * "0123"; unauthenticated: 401 is "401"). Members of a union are not changed: there the YAML
 * type chooses the member. Returns whether anything changed (then the caller validates again).
 */
function coerce(
  issues: z.core.$ZodIssue[],
  data: unknown,
  textOf: (path: PropertyKey[]) => string | undefined,
): boolean {
  let changed = false;
  for (const issue of issues) {
    const input = (issue as { input?: unknown }).input;
    if (input === undefined || input === null || typeof input === 'object') continue;
    if (valueAt(data, issue.path) !== input) continue; // a default the schema filled in
    let next: unknown;
    if (typeof input === 'string') {
      const typed = issue.code === 'invalid_type' ? (YAML_11_BOOLEANS[input] ?? typedScalar(input)) : undefined;
      if (issue.code === 'invalid_type' && typeof typed === issue.expected) next = typed;
    } else {
      const text = textOf(issue.path) ?? String(input);
      if (issue.code === 'invalid_type' && issue.expected === 'string') next = text;
      else if (issue.code === 'invalid_value' && issue.values.includes(text)) next = text;
    }
    if (next !== undefined) {
      setAt(data, issue.path, next);
      changed = true;
    }
  }
  return changed;
}

/**
 * YAML 1.1's other words for true and false. YAML 1.2 reads them as text; Go's YAML (Pomerium,
 * Kubernetes) still takes them where a boolean is expected, and so does the loader.
 */
const YAML_11_BOOLEANS: Record<string, boolean> = Object.fromEntries(
  ['yes', 'on', 'no', 'off'].flatMap((w) =>
    [w, w[0]!.toUpperCase() + w.slice(1), w.toUpperCase()].map((v) => [v, w === 'yes' || w === 'on']),
  ),
);

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v = data;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function setAt(data: unknown, path: readonly PropertyKey[], value: unknown): void {
  const parent = valueAt(data, path.slice(0, -1)) as Record<PropertyKey, unknown>;
  parent[path[path.length - 1]!] = value;
}

/** The message zod is told to use where the schema has none; issueMessage words those. */
const UNWORDED = '\u0000';

/** Keys whose values are never repeated in an error: they hold keys, secrets and passwords. */
const SECRET_KEYS = new Set(['key', 'previousKeys', 'secret', 'clientSecret', 'pass']);

function issuesToProblems(
  issues: z.core.$ZodIssue[],
  doc: Document,
  data: unknown,
  lineOf: (n: Node | null | undefined) => number | undefined,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of issues.flatMap(matchedMember)) {
    let path = issue.path as (string | number)[];
    let message: string;
    let found: unknown = issue.input;
    if (issue.code === 'unrecognized_keys') {
      const [first] = issue.keys;
      path = [...path, first!];
      const near = closest(first!, knownKeys(path.slice(0, -1)));
      message = `unknown key "${issue.keys.join('", "')}"${near ? `; did you mean "${near}"?` : ''}`;
      found = undefined;
    } else if (issue.code === 'invalid_union' && issue.discriminator !== undefined) {
      // The discriminator (type) is missing or names no variant.
      found = valueAt(data, path);
      const options = oneOf((issue as { options?: unknown[] }).options ?? []);
      message = found === undefined ? `is required (${options})` : `expected ${options}`;
    } else if (
      (issue.code === 'invalid_type' || issue.code === 'invalid_union') &&
      issue.input === undefined &&
      valueAt(data, path) === undefined
    ) {
      message = 'is required';
    } else {
      message = issueMessage(issue, path);
    }
    const key = formatKey(path);
    // A check across keys (its input is the map around them) compares values: it has nothing
    // found to show, and about a value that is already wrong in itself it would only add noise.
    const across = issue.code === 'custom' && found !== null && typeof found === 'object';
    if (across && problems.some((p) => p.key === key)) continue;
    if (found !== undefined && !across) {
      const length = (issue.code === 'too_small' || issue.code === 'too_big') && issue.origin === 'string';
      message += `${message.startsWith('expected ') ? ',' : ';'} found ${describe(found, isSecret(path), length)}`;
    }
    problems.push({ key, line: lineAt(doc, path, lineOf), message: withoutCredentials(message) });
  }
  return problems;
}

/**
 * A value of one of a union's types that is wrong inside (a list with a bad entry, where a URL or a
 * list of URLs is expected): the problems of the member of that type, at their own keys.
 */
function matchedMember(issue: z.core.$ZodIssue): z.core.$ZodIssue[] {
  if (issue.code !== 'invalid_union' || issue.discriminator !== undefined) return [issue];
  // The member whose every problem is inside the value (at an entry): the value is of its type.
  const typed = issue.errors.filter((errs) => errs.length > 0 && errs.every((e) => e.path.length > 0));
  if (typed.length !== 1) return [issue];
  return typed[0]!.map((e) => ({ ...e, path: [...issue.path, ...e.path] }) as z.core.$ZodIssue);
}

/** What was expected, for an issue the schema did not word itself. */
function issueMessage(issue: z.core.$ZodIssue, path: (string | number)[]): string {
  if (issue.message !== UNWORDED) return issue.message;
  switch (issue.code) {
    case 'invalid_type': {
      if (issue.expected === 'object') {
        const keys = knownKeys(path);
        return `expected a map${keys.length ? ` of ${keys.slice(0, 6).join(', ')}${keys.length > 6 ? ', ...' : ''}` : ''}`;
      }
      if (issue.expected === 'array') {
        // One plain word where a list is expected (trustedProxies: 10.0.0.0/8): show it as a list.
        const one = issue.input;
        const plain = typeof one === 'string' && /^[\w./:*@-]+$/.test(one) && !isSecret(path);
        return `expected a list${plain ? `, such as [${shown(one)}]` : ''}`;
      }
      return `expected ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
    }
    case 'invalid_value':
      return `expected ${oneOf(issue.values)}`;
    case 'too_small':
    case 'too_big': {
      const small = issue.code === 'too_small';
      const bound = Number(small ? issue.minimum : issue.maximum);
      const than = issue.inclusive ? (small ? 'at least' : 'at most') : small ? 'more than' : 'less than';
      if (issue.origin === 'string')
        return small && bound === 1 ? 'expected non-empty text' : `expected ${than} ${bound} characters`;
      if (issue.origin === 'array')
        return small && bound === 1 ? 'expected at least one entry' : `expected ${than} ${bound} entries`;
      return `expected a number ${than} ${bound}`;
    }
    case 'invalid_format':
      return `expected text matching ${issue.pattern ?? issue.format}`;
    case 'invalid_key':
      return issueMessage(issue.issues[0] ?? { ...issue, code: 'custom', message: 'expected another key' }, path);
    case 'invalid_union': {
      // Every member refused the value's type: say which types would do.
      const members = issue.errors.map((errs) =>
        errs.length === 1 && errs[0]!.path.length === 0 ? issueMessage(errs[0]!, path).replace(/^expected /, '') : '',
      );
      return members.every(Boolean) ? `expected ${[...new Set(members)].join(' or ')}` : 'expected another value';
    }
    default:
      return 'is not valid here';
  }
}

const TYPE_NAMES: Record<string, string> = {
  string: 'text',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  record: 'a map',
};

function oneOf(values: readonly unknown[]): string {
  const names = values.map((v) => String(v));
  return names.length === 1 ? names[0]! : `one of ${names.join(', ')}`;
}

function isSecret(path: readonly (string | number)[]): boolean {
  return path.some((p) => typeof p === 'string' && SECRET_KEYS.has(p));
}

/** A value as an error repeats it: text quoted and cut short, a URL's credentials and any secret left out. */
function describe(value: unknown, secret: boolean, length: boolean): string {
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return value.length ? 'a list' : 'an empty list';
  if (typeof value === 'object') return 'a map';
  if (typeof value !== 'string') return String(value);
  const chars = `${value.length} character${value.length === 1 ? '' : 's'}`;
  if (secret) return value.length ? chars : 'empty text';
  const quoted = JSON.stringify(shown(value));
  return length && value.length ? `${quoted} (${chars})` : quoted;
}

/** A value cut short, without the credentials of a URL in it. */
function shown(value: string | number | boolean): string {
  const text = withoutCredentials(String(value));
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** user:password@ of any URL in the text (store.url, cache.url, or one quoted by a check) as ***@. */
function withoutCredentials(text: string): string {
  return text.replace(/\/\/[^/@\s]*@/g, '//***@');
}

/**
 * The line of the key whose value is the deepest node on the path that is in the file: the
 * value's own line, or for something missing, the line of the map it is missing from.
 */
function lineAt(doc: Document, path: (string | number)[], lineOf: (n: Node | null | undefined) => number | undefined) {
  let node: unknown = doc.contents;
  let line = lineOf(node as Node) ?? 1;
  for (const p of path) {
    if (isMap(node)) {
      const pair = node.items.find((i) => isScalar(i.key) && i.key.value === p);
      if (!pair) break;
      line = lineOf(pair.key as Node) ?? line;
      node = pair.value;
    } else if (isSeq(node) && typeof p === 'number' && node.items[p]) {
      node = node.items[p];
      line = lineOf(node as Node) ?? line;
    } else break;
  }
  return line;
}

function formatKey(path: readonly (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function keyPathOf(doc: Document, target: Node): string | undefined {
  let found: string | undefined;
  const walk = (node: unknown, path: (string | number)[]) => {
    if (found !== undefined) return;
    if (node === target) found = formatKey(path);
    else if (isMap(node))
      for (const pair of node.items) walk(pair.value, [...path, String((pair.key as { value?: unknown })?.value)]);
    else if (isSeq(node)) node.items.forEach((item, i) => walk(item, [...path, i]));
  };
  walk(doc.contents, []);
  return found;
}

function knownKeys(path: (string | number)[]): string[] {
  let schema: unknown = ConfigSchema;
  for (const p of path) {
    schema = unwrap(schema);
    const s = schema as { shape?: Record<string, unknown>; element?: unknown };
    if (typeof p === 'number') schema = s.element;
    else schema = s.shape?.[p];
  }
  const inner = unwrap(schema) as { shape?: Record<string, unknown>; options?: unknown[] } | undefined;
  // A discriminated union (providers[]): the keys of every variant.
  const shapes = inner?.shape
    ? [inner.shape]
    : (inner?.options ?? []).map((o) => (unwrap(o) as { shape?: Record<string, unknown> })?.shape ?? {});
  return [...new Set(shapes.flatMap((sh) => Object.keys(sh)))];
}

function unwrap(schema: unknown): unknown {
  let s = schema as { def?: { innerType?: unknown; in?: unknown; schema?: unknown; type?: string } } | undefined;
  for (let i = 0; i < 10 && s?.def; i++) {
    const next = s.def.innerType ?? s.def.in ?? (s.def.type === 'pipe' ? s.def.in : undefined);
    if (!next) break;
    s = next as typeof s;
  }
  return s;
}
