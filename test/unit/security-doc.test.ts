import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * docs/security.md cites, for every case, the tests that show it, as `file` ("test name", ...),
 * and the code cites the cases as "security.md #n". Both must stay true as tests are renamed and
 * moved: a citation of a test that does not exist (or of a case the document does not have)
 * fails here.
 *
 * A cited name is the test's (or suite's) name without a trailing "(security.md #n)" or
 * "(issue n)" tag; "..." in it stands for words left out, and ${...} in a test's name for whatever
 * it becomes.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
const doc = readFileSync(join(root, 'docs/security.md'), 'utf8');

function unescapeJs(s: string): string {
  return s.replace(/\\(u\{[0-9a-fA-F]+\}|u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)/g, (_m, e: string) => {
    if (e[0] === 'u') return String.fromCodePoint(Number.parseInt(e.replace(/[u{}]/g, ''), 16));
    if (e[0] === 'x') return String.fromCharCode(Number.parseInt(e.slice(1), 16));
    return ({ n: '\n', t: '\t', r: '\r' } as Record<string, string>)[e] ?? e;
  });
}

/** The names given to test(), it() and describe() in a file; \0 marks a ${...} of a template. */
function testNames(src: string): string[] {
  const names: string[] = [];
  const call = /\b(?:test|it|describe|suite|describeOrSkip)(?:\.(?:skip|only|todo))?\(\s*(['"`])/g;
  for (let m = call.exec(src); m; m = call.exec(src)) {
    const quote = m[1]!;
    let i = call.lastIndex;
    let raw = '';
    while (i < src.length && src[i] !== quote) {
      if (src[i] === '\\') {
        raw += src.slice(i, i + 2);
        i += 2;
      } else if (quote === '`' && src.startsWith('${', i)) {
        i += 2;
        for (let depth = 1; depth > 0 && i < src.length; i++) {
          if (src[i] === '{') depth++;
          if (src[i] === '}') depth--;
        }
        raw += '\0';
      } else raw += src[i++];
    }
    names.push(
      unescapeJs(raw)
        .replace(/\s+/g, ' ')
        .replace(/\s*\((?:security\.md #|issue )[^)]*\)$/, '')
        .replace(/, security\.md #[^)]*\)$/, ')'),
    );
  }
  return names;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function cites(name: string, cited: string): boolean {
  const byCite = new RegExp(
    `^${cited
      .split('...')
      .map((p) => escape(p.trim()))
      .join('.*')}$`,
    's',
  );
  if (byCite.test(name.replaceAll('\0', ''))) return true;
  const byName = new RegExp(`^${name.split('\0').map(escape).join('.*')}$`, 's');
  return byName.test(cited);
}

/** Each `test/...` file the document cites, with the quoted names in the parentheses after it. */
function citations(): { file: string; names: string[] }[] {
  const flat = doc.replace(/\n\s*/g, ' ');
  const out: { file: string; names: string[] }[] = [];
  const path = /`(test\/[^`\s]+)`/g;
  for (let m = path.exec(flat); m; m = path.exec(flat)) {
    const names: string[] = [];
    let i = path.lastIndex;
    while (flat[i] === ' ') i++;
    if (flat[i] === '(') {
      let depth = 0;
      let quoted: string | undefined;
      for (; i < flat.length; i++) {
        const c = flat[i]!;
        if (quoted !== undefined) {
          if (c === '\\') quoted += flat[++i];
          else if (c === '"') {
            names.push(quoted);
            quoted = undefined;
          } else quoted += c;
        } else if (c === '"') quoted = '';
        else if (c === '(') depth++;
        else if (c === ')' && --depth === 0) break;
      }
    }
    out.push({ file: m[1]!, names });
  }
  return out;
}

const cases = [...doc.matchAll(/^### (\d+)\. /gm)].map((m) => Number(m[1]));

test('the cases are numbered 1 to n, each once, in order', () => {
  assert.ok(cases.length > 130);
  assert.deepEqual(
    cases,
    cases.map((_, i) => i + 1),
  );
});

test('every test file and test name docs/security.md cites exists', () => {
  const found = citations();
  assert.ok(found.length > 300, `${found.length} citations read`);
  const wrong: string[] = [];
  const names = new Map<string, string[]>();
  for (const { file, names: cited } of found) {
    if (!existsSync(join(root, file))) {
      wrong.push(`${file}: no such file`);
      continue;
    }
    if (!names.has(file)) names.set(file, testNames(readFileSync(join(root, file), 'utf8')));
    for (const name of cited)
      if (!names.get(file)!.some((n) => cites(n, name))) wrong.push(`${file}: no test "${name}"`);
  }
  assert.deepEqual(wrong, []);
});

test('every "security.md #n" in the code, the tests and the docs names a case the document has', () => {
  const known = new Set(cases);
  const wrong: string[] = [];
  const files = ['src', 'test', 'packages', 'docs', 'examples']
    .flatMap((dir) => (readdirSync(join(root, dir), { recursive: true }) as string[]).map((f) => join(dir, f)))
    .filter((f) => /\.(ts|md|conf|yml|yaml)$|Caddyfile$/.test(f) && !f.includes('node_modules'));
  files.push('README.md');
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    for (const m of text.matchAll(/security\.md ((?:#\d+(?:-\d+)?(?:, ?)?)+)/g))
      for (const n of m[1]!.match(/\d+/g)!) if (!known.has(Number(n))) wrong.push(`${file}: security.md #${n}`);
  }
  // The document's own references to its cases ("(#149)").
  for (const m of doc.matchAll(/(?<![\w/])#(\d+)/g))
    if (!known.has(Number(m[1]))) wrong.push(`docs/security.md: #${m[1]}`);
  assert.deepEqual(wrong, []);
});
