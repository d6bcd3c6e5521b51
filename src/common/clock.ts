/**
 * Time enters pure code only through a Clock. Real code gets `systemClock`;
 * tests and simulations get a ManualClock they advance by hand, so timers fire
 * deterministically and in order.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  nowMs(): number;
  /** Runs `fn` once after `delayMs`; returns a function that cancels it. */
  setTimer(delayMs: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimer(delayMs, fn) {
    const handle = setTimeout(fn, delayMs);
    return () => clearTimeout(handle);
  },
};

interface PendingTimer {
  dueMs: number;
  seq: number;
  fn: () => void;
}

export class ManualClock implements Clock {
  private currentMs: number;
  private seq = 0;
  private timers: PendingTimer[] = [];

  constructor(startMs = 0) {
    this.currentMs = startMs;
  }

  nowMs(): number {
    return this.currentMs;
  }

  setTimer(delayMs: number, fn: () => void): () => void {
    const timer: PendingTimer = { dueMs: this.currentMs + Math.max(0, delayMs), seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }

  /** Number of timers not yet fired. */
  pendingTimers(): number {
    return this.timers.length;
  }

  /**
   * Moves time forward by `deltaMs`, firing due timers in (due time, creation)
   * order; a timer set by a firing timer fires too if it falls inside the step.
   */
  advance(deltaMs: number): void {
    if (deltaMs < 0) throw new RangeError(`ManualClock.advance: deltaMs must be >= 0, got ${deltaMs}`);
    const targetMs = this.currentMs + deltaMs;
    for (;;) {
      const next = this.nextDue(targetMs);
      if (next === undefined) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.currentMs = next.dueMs;
      next.fn();
    }
    this.currentMs = targetMs;
  }

  private nextDue(limitMs: number): PendingTimer | undefined {
    let best: PendingTimer | undefined;
    for (const t of this.timers) {
      if (t.dueMs > limitMs) continue;
      if (best === undefined || t.dueMs < best.dueMs || (t.dueMs === best.dueMs && t.seq < best.seq))
        best = t;
    }
    return best;
  }
}
