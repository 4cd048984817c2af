import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { loadConfig } from '../config/load.ts';
import { openStore, type Store } from '../store/index.ts';
import { LATEST_VERSION } from '../store/migrations.ts';
import { auditCommand } from './audit.ts';
import { out, UsageError } from './io.ts';

/**
 * `gatehouse export --to FILE` and `gatehouse import FILE [--force]`: the whole store as JSON
 * lines, to move from SQLite to PostgreSQL and back. The first line is the header: format,
 * version, the schema's migration, the source and every table's row count. Then one line per row,
 * {"t": table, "r": {column: value}}. Nothing is decrypted: password hashes, session hashes,
 * encrypted signing keys and provider tokens go as stored; so does the generated master key (in
 * kv) unless secrets.key is in the config. The file is 0600: it is as secret as the store.
 */

export const EXPORT_FORMAT = 'gatehouse-export';
export const EXPORT_VERSION = 1;
const PAGE = 500;
const BATCH = 100;

interface Header {
  format: string;
  version: number;
  schema: number;
  source: string;
  exportedAt: string;
  counts: Record<string, number>;
}

async function withStore<T>(configFile: string, fn: (store: Store) => Promise<T>): Promise<T> {
  const config = loadConfig(configFile);
  // No secrets are loaded (or generated): the store is copied as it is.
  const store = await openStore(config.store);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export async function exportStore(configFile: string, flags: { to?: string; force?: boolean }): Promise<number> {
  const target = flags.to;
  if (!target) throw new UsageError('export needs --to FILE');
  if (!flags.force && statSync(target, { throwIfNoEntry: false }))
    throw new UsageError(`${target} exists; use --force to replace it`);
  return withStore(configFile, async (store) => {
    // Rows first, to a file of our own; the header (counts of what was written) goes in front.
    const body = `${target}.${randomBytes(6).toString('hex')}.part`;
    const fd = openSync(body, 'wx', 0o600);
    const counts: Record<string, number> = {};
    try {
      for (const table of await store.transfer.tables()) {
        counts[table] = 0;
        for (let offset = 0; ; offset += PAGE) {
          const rows = await store.transfer.rows(table, offset, PAGE);
          let chunk = '';
          for (const r of rows) chunk += `${JSON.stringify({ t: table, r })}\n`;
          if (chunk) writeSync(fd, chunk);
          counts[table] += rows.length;
          if (rows.length < PAGE) break;
        }
      }
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      unlinkSync(body);
      throw err;
    }
    closeSync(fd);
    const header: Header = {
      format: EXPORT_FORMAT,
      version: EXPORT_VERSION,
      schema: await store.transfer.schemaVersion(),
      source: store.kind,
      exportedAt: new Date().toISOString(),
      counts,
    };
    const final = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    const out_ = openSync(final, 'wx', 0o600);
    try {
      writeSync(out_, `${JSON.stringify(header)}\n`);
      await new Promise<void>((resolve, reject) => {
        const rs = createReadStream(body);
        rs.on('data', (c) => writeSync(out_, c as Buffer));
        rs.on('end', () => resolve());
        rs.on('error', reject);
      });
      fsyncSync(out_);
    } finally {
      closeSync(out_);
      unlinkSync(body);
    }
    renameSync(final, target);
    await auditCommand({ store }, 'export', [], {}, 'success');
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    out(`${target}: ${total} rows from the ${store.kind} store (${summary(counts)}), readable only by you (0600)`);
    out(
      counts.kv
        ? 'It holds password hashes, sessions and the encrypted keys and tokens, and the master key Gatehouse generated unless secrets.key is set: keep it as secret as the store.'
        : 'It holds password hashes, sessions and the encrypted keys and tokens: keep it private.',
    );
    return 0;
  });
}

function summary(counts: Record<string, number>): string {
  return Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([t, n]) => `${t} ${n}`)
    .join(', ');
}

export async function importStore(configFile: string, args: string[], flags: { force?: boolean }): Promise<number> {
  const [file, ...extra] = args;
  if (!file) throw new UsageError('import needs FILE');
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  if (!statSync(file, { throwIfNoEntry: false })) throw new UsageError(`${file} does not exist`);
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity })[Symbol.asyncIterator]();
  const first = await lines.next();
  let header: Header;
  try {
    header = JSON.parse(first.done ? '' : first.value) as Header;
  } catch {
    throw new UsageError(`${file} is not a Gatehouse export (its first line is not JSON)`);
  }
  if (header?.format !== EXPORT_FORMAT || typeof header.counts !== 'object' || header.counts === null)
    throw new UsageError(`${file} is not a Gatehouse export`);
  if (header.version !== EXPORT_VERSION)
    throw new UsageError(`${file} is export format ${header.version}; this Gatehouse reads format ${EXPORT_VERSION}`);
  if (header.schema > LATEST_VERSION)
    throw new UsageError(
      `${file} comes from a newer Gatehouse (schema ${header.schema}, this one knows ${LATEST_VERSION}): upgrade first`,
    );
  return withStore(configFile, async (store) => {
    const tables = await store.transfer.tables();
    for (const t of Object.keys(header.counts))
      if (!tables.includes(t)) throw new UsageError(`${file} has table "${t.slice(0, 64)}", which this store does not`);
    const filled = [];
    for (const t of tables) if ((await store.transfer.count(t)) > 0) filled.push(t);
    if (filled.length && !flags.force)
      throw new UsageError(
        `the ${store.kind} store is not empty (${filled.join(', ')}): import into a new one, or use --force to replace everything in it`,
      );
    if (filled.length) await store.transfer.clear();
    const order = new Map(tables.map((t, i) => [t, i]));
    const seen: Record<string, number> = {};
    let table = '';
    let batch: Record<string, string | number | null>[] = [];
    const flush = async () => {
      await store.transfer.insert(table, batch);
      seen[table] = (seen[table] ?? 0) + batch.length;
      batch = [];
    };
    let n = 1;
    for (let next = await lines.next(); !next.done; next = await lines.next()) {
      n++;
      if (!next.value.trim()) continue;
      let line: { t?: unknown; r?: unknown };
      try {
        line = JSON.parse(next.value) as typeof line;
      } catch {
        throw new UsageError(`${file}, line ${n}: not JSON`);
      }
      if (typeof line.t !== 'string' || !order.has(line.t) || typeof line.r !== 'object' || line.r === null)
        throw new UsageError(`${file}, line ${n}: not a row of a known table`);
      if (line.t !== table) {
        if (batch.length) await flush();
        // Parents before children: the order the export wrote, which foreign keys need.
        if (table && order.get(line.t)! < order.get(table)!)
          throw new UsageError(`${file}, line ${n}: table ${line.t} after ${table}: the file is out of order`);
        table = line.t;
      }
      batch.push(line.r as Record<string, string | number | null>);
      if (batch.length >= BATCH) await flush();
    }
    if (batch.length) await flush();
    // Counts checked twice: what the file says against what was read, and against the store.
    const problems: string[] = [];
    for (const t of tables) {
      const expected = header.counts[t] ?? 0;
      const read = seen[t] ?? 0;
      const stored = await store.transfer.count(t);
      if (expected !== read || read !== stored)
        problems.push(`${t}: the header says ${expected}, the file has ${read}, the store now has ${stored}`);
    }
    if (problems.length) {
      out(`import incomplete:\n  ${problems.join('\n  ')}`);
      return 1;
    }
    const total = Object.values(seen).reduce((a, b) => a + b, 0);
    out(
      `imported ${total} rows from ${file} (${header.source}, ${header.exportedAt}) into the ${store.kind} store: ${summary(seen)}; every count checked`,
    );
    await auditCommand({ store }, 'import', [], {}, 'success');
    return 0;
  });
}
