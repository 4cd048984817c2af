import { stdin, stdout, stderr } from 'node:process';

/** A mistake on the command line: exit 2, with the command's usage when it is given. */
export class UsageError extends Error {
  readonly usage: string | undefined;
  constructor(message: string, usage?: string) {
    super(message);
    this.usage = usage;
  }
}

export const out = (s = '') => void stdout.write(s + '\n');
export const err = (s = '') => void stderr.write(s + '\n');

/** Reads a secret: hidden at a terminal, or the whole of stdin when piped. Never from argv. */
export async function readSecret(prompt: string, confirm = false): Promise<string> {
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks)
      .toString('utf8')
      .replace(/\r?\n$/, '');
  }
  const ask = (q: string) =>
    new Promise<string>((resolve, reject) => {
      stderr.write(q);
      stdin.setRawMode(true);
      stdin.resume();
      let value = '';
      const onData = (buf: Buffer) => {
        for (const ch of buf.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            done();
            stderr.write('\n');
            return resolve(value);
          }
          if (ch === '\u0003') {
            done();
            return reject(new UsageError('cancelled'));
          }
          if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
          else value += ch;
        }
      };
      const done = () => {
        stdin.off('data', onData);
        stdin.setRawMode(false);
        stdin.pause();
      };
      stdin.on('data', onData);
    });
  const first = await ask(prompt);
  if (confirm && (await ask('Repeat: ')) !== first) throw new UsageError('the two entries differ');
  return first;
}

/** A time as the CLI's tables show it: UTC to the second, 2026-12-07T01:17:05Z. */
export const time = (ms: number): string => new Date(ms).toISOString().slice(0, 19) + 'Z';

/** A `list` command's output: JSON with --json, else a table of `columns`, or `empty` when there are no rows. */
export function printRows(rows: Record<string, unknown>[], columns: string[], empty: string, json?: boolean): void {
  out(json ? JSON.stringify(rows) : rows.length ? table(rows, columns) : empty);
}

export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cells = rows.map((r) => columns.map((c) => String(r[c] ?? '')));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}
