import type { Clock } from '../../../src/common/clock.js';
import { MeshError } from '../../../src/common/errors.js';

/**
 * Proposals and reads waiting for an outcome. Each waiter has a timeout
 * (outcome unknown), so nothing waits forever; reads wait in two steps:
 * for their ReadState, then for the node to apply up to its index.
 */
interface Waiter {
  resolve(index: number): void;
  reject(err: Error): void;
  cancelTimer(): void;
}

export class PendingRequests {
  private readonly proposals = new Map<string, Waiter>();
  private readonly reads = new Map<string, Waiter>();
  private readonly readsAwaitingApply: Array<{ index: number; waiter: Waiter }> = [];

  constructor(
    private readonly clock: Clock,
    private readonly timeoutMs: number,
  ) {}

  private wait(map: Map<string, Waiter>, key: string, what: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        cancelTimer: this.clock.setTimer(this.timeoutMs, () => {
          map.delete(key);
          const at = this.readsAwaitingApply.findIndex((r) => r.waiter === w);
          if (at >= 0) this.readsAwaitingApply.splice(at, 1);
          reject(
            new MeshError(
              'RAFT_TIMEOUT',
              `raft ${what} had no outcome within ${this.timeoutMs} ms (a proposal may still commit)`,
            ),
          );
        }),
      };
      map.set(key, w);
    });
  }

  waitProposal(key: string): Promise<number> {
    return this.wait(this.proposals, key, 'proposal');
  }

  waitRead(key: string): Promise<number> {
    return this.wait(this.reads, key, 'read');
  }

  /** The core refused the request outright. */
  failProposal(key: string, err: Error): void {
    settle(this.proposals, key)?.reject(err);
  }

  failRead(key: string, err: Error): void {
    settle(this.reads, key)?.reject(err);
  }

  proposalApplied(key: string, index: number): void {
    settle(this.proposals, key)?.resolve(index);
  }

  readStateArrived(key: string, index: number, appliedIndex: number): void {
    const w = this.reads.get(key);
    if (w === undefined) return;
    this.reads.delete(key);
    this.readsAwaitingApply.push({ index, waiter: w });
    this.applied(appliedIndex);
  }

  /** Releases reads whose index the node has now applied. */
  applied(appliedIndex: number): void {
    for (let i = this.readsAwaitingApply.length - 1; i >= 0; i--) {
      const r = this.readsAwaitingApply[i]!;
      if (r.index > appliedIndex) continue;
      this.readsAwaitingApply.splice(i, 1);
      r.waiter.cancelTimer();
      r.waiter.resolve(r.index);
    }
  }

  /** Fails every proposal and every read that has no ReadState yet. */
  failInFlight(err: Error): void {
    for (const map of [this.proposals, this.reads]) {
      for (const w of map.values()) {
        w.cancelTimer();
        w.reject(err);
      }
      map.clear();
    }
  }

  failAll(err: Error): void {
    this.failInFlight(err);
    for (const r of this.readsAwaitingApply.splice(0)) {
      r.waiter.cancelTimer();
      r.waiter.reject(err);
    }
  }
}

function settle(map: Map<string, Waiter>, key: string): Waiter | undefined {
  const w = map.get(key);
  if (w === undefined) return undefined;
  map.delete(key);
  w.cancelTimer();
  return w;
}
