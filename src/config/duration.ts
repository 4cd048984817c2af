import { z } from 'zod';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses "90d", "12h", "30m", "15s", "250ms", "1h30m" or a number of seconds into milliseconds.
 * Returns undefined for anything else, so the caller can report the key that is wrong.
 */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input * 1000 : undefined;
  const text = input.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const re = /(\d+)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    end = re.lastIndex;
  }
  return end > 0 && end === text.length ? total : undefined;
}

export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const SUCH_AS = 'expected a duration such as "30s", "15m", "12h" or "90d"';

/**
 * A duration key of gatehouse.yaml ("30s", "15m", "12h", "90d", or a number of seconds), as
 * milliseconds. With `max`, anything outside [min, max] is "expected a duration between ..."
 * (`range` spells the bounds, else formatDuration does); with `min` alone, a shorter one is
 * "<what> must be at least ...".
 */
export function durationField(def: string, o: { min?: number; max?: number; range?: string; what?: string } = {}) {
  return z
    .union([z.string(), z.number()], { error: SUCH_AS })
    .default(def)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      const min = o.min ?? 0;
      if (o.max !== undefined && (ms === undefined || ms < min || ms > o.max)) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration between ${o.range ?? `"${formatDuration(min)}" and "${formatDuration(o.max)}"`}`,
        });
        return z.NEVER;
      }
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: SUCH_AS });
        return z.NEVER;
      }
      if (ms < min) {
        ctx.addIssue({
          code: 'custom',
          message: `${o.what ?? 'the duration'} must be at least ${formatDuration(min)}`,
        });
        return z.NEVER;
      }
      return ms;
    });
}
