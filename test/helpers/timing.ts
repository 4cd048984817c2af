import { uniqueEmail } from './client.ts';

/**
 * How much longer an unknown address takes than a known one, as an attacker timing many tries
 * would see it: `pairs` pairs run back to back in alternating order (a busy machine slows both
 * of a pair alike), and the median of the pairs' ratios unknown / known is returned with them.
 */
export async function unknownToKnownRatio(
  known: string,
  time: (email: string) => Promise<number>,
  pairs: number,
): Promise<{ ratio: number; pairs: number[] }> {
  const ratios: number[] = [];
  for (let i = 0; i < pairs; i++) {
    const ghost = uniqueEmail('ghost');
    let k: number, u: number;
    if (i % 2) {
      k = await time(known);
      u = await time(ghost);
    } else {
      u = await time(ghost);
      k = await time(known);
    }
    ratios.push(u / k);
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  return { ratio: sorted[Math.floor(sorted.length / 2)]!, pairs: ratios };
}

/** Milliseconds `fn` takes. */
export async function elapsed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}
