import { z } from 'zod';

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

const SUCH_AS = 'expected a size such as "10MB", "512KiB", "1GiB" or a number of bytes';

/** Parses "10MB", "512KiB", "1.5GB" or a number of bytes; undefined for anything else. */
export function parseSize(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isSafeInteger(input) && input >= 0 ? input : undefined;
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/.exec(input.trim());
  if (!m) return undefined;
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2] ?? 'B']!);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Bytes as the config would write them: "10MB", "512KiB", or a number of bytes. */
export function formatSize(bytes: number): string {
  for (const unit of ['GiB', 'MiB', 'KiB', 'GB', 'MB', 'KB'])
    if (bytes >= UNITS[unit]! && bytes % UNITS[unit]! === 0) return `${bytes / UNITS[unit]!}${unit}`;
  return `${bytes} bytes`;
}

/** A size key of gatehouse.yaml, as bytes (at least 1). */
export function sizeField() {
  return z.union([z.string(), z.number()], { error: SUCH_AS }).transform((v, ctx) => {
    const bytes = parseSize(v);
    if (bytes === undefined || bytes < 1) {
      ctx.addIssue({ code: 'custom', message: SUCH_AS });
      return z.NEVER;
    }
    return bytes;
  });
}
