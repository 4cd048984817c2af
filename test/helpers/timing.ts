import { uniqueEmail } from './client.ts';

/**
 * How an unknown address's timing compares with a known one's, as an attacker timing many
 * tries would see it: `pairs` pairs run back to back in alternating order (a busy machine
 * slows both of a pair alike, and neither order is favoured). Returns the median of the pairs'
 * ratios unknown / known, the ratios, and in how many pairs the known address was the slower.
 * `settle` runs before each timed call (e.g. waiting for mail queued in the background), so
 * work one call leaves behind is never counted in the next one's time.
 */
export async function unknownToKnownRatio(
  known: string,
  time: (email: string) => Promise<number>,
  pairs: number,
  o: { settle?: () => Promise<unknown> } = {},
): Promise<{ ratio: number; pairs: number[]; knownSlower: number }> {
  const ratios: number[] = [];
  let knownSlower = 0;
  const timed = async (email: string) => {
    await o.settle?.();
    return time(email);
  };
  for (let i = 0; i < pairs; i++) {
    const ghost = uniqueEmail('ghost');
    let k: number, u: number;
    if (i % 2) {
      k = await timed(known);
      u = await timed(ghost);
    } else {
      u = await timed(ghost);
      k = await timed(known);
    }
    ratios.push(u / k);
    if (k > u) knownSlower++;
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  return { ratio: sorted[Math.floor(sorted.length / 2)]!, pairs: ratios, knownSlower };
}

/** Milliseconds `fn` takes. */
export async function elapsed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/**
 * Polls `probe` every 25 ms until it answers something truthy, and returns that; fails naming
 * `what` after `ms`. For what happens on its own schedule (a timer, another process), without
 * guessing how long it takes.
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
