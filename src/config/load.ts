import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { ConfigSchema, type Config } from './schema.ts';

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

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^}\\]|\\.)*))?\}/g;

/**
 * Loads and validates a config file. `${NAME}` and `${NAME:-default}` are replaced inside
 * YAML scalars after parsing, so a variable's value can never add keys or change structure.
 * A scalar that is exactly one unquoted reference takes the variable's YAML type (a port
 * stays a number). Throws ConfigError naming key and line for every problem.
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
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return;
      const raw = node.value;
      const missing: string[] = [];
      const replaced = raw.replace(ENV_REF, (_m, name: string, def: string | undefined) => {
        const value = env[name];
        if (value !== undefined && value !== '') return value;
        if (def !== undefined) return def.replace(/\\(.)/g, '$1');
        missing.push(name);
        return '';
      });
      if (missing.length) {
        problems.push({
          key: keyPathOf(doc, node) ?? '',
          line: lineOf(node),
          message: `environment variable ${missing.join(', ')} is not set (use \${${missing[0]}:-default} for a default)`,
        });
        return;
      }
      const whole = /^\$\{[^}]*\}$/.test(raw) && node.type === 'PLAIN';
      if (whole) {
        const typed = parseDocument(replaced).toJS();
        node.value = typed === null || typeof typed === 'object' ? replaced : typed;
      } else {
        node.value = replaced;
      }
    },
  });
  if (problems.length) throw new ConfigError(file, problems);

  const data = doc.toJS() ?? {};
  const result = ConfigSchema.safeParse(data);
  if (!result.success) throw new ConfigError(file, issuesToProblems(result.error.issues, doc, lineOf));
  return result.data;
}

function issuesToProblems(
  issues: z.core.$ZodIssue[],
  doc: Document,
  lineOf: (n: Node | null | undefined) => number | undefined,
): ConfigProblem[] {
  return issues.map((issue) => {
    let path = issue.path as (string | number)[];
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const [first] = issue.keys;
      path = [...path, first!];
      message = `unknown key "${issue.keys.join('", "')}"${suggest(first!, knownKeys(path.slice(0, -1)))}`;
    } else if (issue.code === 'invalid_type' && issue.input === undefined) {
      message = 'is required';
    } else if (issue.code === 'invalid_union' && 'discriminator' in issue) {
      message = `unknown type; expected one of ${(issue as unknown as { options?: string[] }).options?.join(', ') ?? message}`;
    }
    // Point at the deepest node that exists in the file.
    let line: number | undefined;
    for (let n = path.length; n >= 0 && line === undefined; n--) {
      const node = doc.getIn(path.slice(0, n), true) as Node | undefined;
      if (n === path.length && issue.code === 'unrecognized_keys') {
        const parent = doc.getIn(path.slice(0, -1), true);
        if (isMap(parent)) {
          const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === path[path.length - 1]);
          line = lineOf(pair?.key as Node | undefined);
        }
        continue;
      }
      if (n > 0 || node) line = lineOf(node);
    }
    return { key: formatKey(path), line, message };
  });
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

function suggest(word: string, candidates: string[]): string {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestScore) {
      bestScore = d;
      best = c;
    }
  }
  return best !== undefined && bestScore <= Math.max(2, Math.floor(word.length / 3)) ? `; did you mean "${best}"?` : '';
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
