/**
 * A write through another handle (another process) reaches this one as a request would: from
 * the next event-loop turn (store/sqlite.ts reads other connections' commits once per turn).
 */
export const laterRequest = () => new Promise<void>((resolve) => setImmediate(resolve));
