import type { DeliveryCounts } from '../events/index.ts';
import type { OperatorContext } from './context.ts';
import { out, printRows, time, UsageError } from './io.ts';

/**
 * `gatehouse events list|send`: the events for apps (docs/events.md) that an app has not taken
 * yet, with why (the last attempt's error) and when the next attempt is; `send` tries every one
 * of them now instead of at its next attempt (after the app is back), and says how that went.
 */
export async function events(ctx: OperatorContext, args: string[], flags: { json?: boolean }): Promise<number> {
  switch (args[0]) {
    case 'list': {
      const rows = (await ctx.store.appEvents.list(10_000)).map((e) => ({
        id: e.id,
        app: e.app,
        type: e.type,
        user: e.userId,
        happened: time(e.at),
        attempts: e.attempts,
        'last error': e.lastError ?? '',
        'next attempt': time(e.nextAt),
      }));
      printRows(
        rows,
        ['id', 'app', 'type', 'user', 'happened', 'attempts', 'last error', 'next attempt'],
        'no events waiting for an app',
        flags.json,
      );
      return 0;
    }
    case 'send': {
      const waiting = await ctx.store.appEvents.expedite(Date.now());
      const counts = await ctx.events.deliverDue();
      out(`${waiting} waiting event(s) tried now${delivery(counts) || ': none due'}`);
      return counts.retried + counts.dropped === 0 ? 0 : 1;
    }
    default:
      throw new UsageError('gatehouse events list|send');
  }
}

/**
 * Sends the events a command recorded to the apps that take them, and says how that went ("" when
 * no app takes events or there were none).
 */
export async function tellApps(ctx: OperatorContext): Promise<string> {
  if (!ctx.events.enabled) return '';
  return delivery(await ctx.events.deliverDue());
}

function delivery({ delivered, retried, dropped }: DeliveryCounts): string {
  const parts = [];
  if (delivered) parts.push(`${delivered} app event(s) delivered`);
  if (retried) parts.push(`${retried} not taken yet (gatehouse serve retries them)`);
  if (dropped) parts.push(`${dropped} refused or dropped (see the error above)`);
  return parts.length ? `; ${parts.join(', ')}` : '';
}
