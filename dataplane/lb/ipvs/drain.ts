/**
 * Draining (pure): a destination whose weight went to 0 gets no new
 * connections; it is removed once it has no active connection left or its
 * deadline has passed, whichever comes first.
 */

export interface DrainTracker {
  /** When the weight went to 0 (ms on the backend's clock). */
  sinceMs: number;
  deadlineMs: number;
}

export type DrainVerdict = 'keep' | 'remove';

export function startDrain(nowMs: number, drainTimeoutMs: number): DrainTracker {
  return { sinceMs: nowMs, deadlineMs: nowMs + drainTimeoutMs };
}

export function drainVerdict(tracker: DrainTracker, activeConns: number, nowMs: number): DrainVerdict {
  if (activeConns === 0) return 'remove';
  return nowMs >= tracker.deadlineMs ? 'remove' : 'keep';
}

/** Identity of a destination inside one virtual service. */
export function destinationId(serviceKey: string, address: string, port: number): string {
  return `${serviceKey}|${address}:${port}`;
}
