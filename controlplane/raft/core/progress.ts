import { Inflights } from './inflights.js';
import type { ProgressState, ProgressStatus } from './types.js';

/**
 * The leader's view of one follower (etcd-io/raft's Progress). In `probe` it
 * sends one append per heartbeat until it finds the match point; in
 * `replicate` it streams optimistically, bounded by inflights; in `snapshot`
 * it waits for the snapshot stream to finish.
 */
export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  pendingSnapshot = 0;
  recentActive = false;
  /** Probe: an append is outstanding. Replicate: inflights are full. */
  msgAppFlowPaused = false;
  isLearner: boolean;
  readonly inflights: Inflights;

  constructor(next: number, maxInflightMsgs: number, maxInflightBytes: number, isLearner: boolean) {
    this.next = next;
    this.isLearner = isLearner;
    this.inflights = new Inflights(maxInflightMsgs, maxInflightBytes);
  }

  /** A new term: forget everything learned about this follower. */
  resetForTerm(next: number, match: number, isLearner: boolean): void {
    this.resetState('probe');
    this.next = next;
    this.match = match;
    this.isLearner = isLearner;
    this.recentActive = false;
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pendingSnapshot = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pendingSnapshot + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** Records that an append carrying `count` entries ending at `lastIndex` was sent. */
  sentEntries(count: number, bytes: number, lastIndex: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex, bytes);
      }
      this.msgAppFlowPaused = this.inflights.full();
    } else if (this.state === 'probe') {
      this.msgAppFlowPaused = true;
    }
  }

  /** An ack for index `n`; returns false when it is stale (never moves match backwards). */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * A rejection of the append after `rejected`; `matchHint` is the follower's
   * guess. Returns false when the rejection is stale (duplicated or reordered).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
      case 'replicate':
        return this.msgAppFlowPaused;
      case 'snapshot':
        return true;
    }
  }

  status(): ProgressStatus {
    return {
      match: this.match,
      next: this.next,
      state: this.state,
      isLearner: this.isLearner,
      recentActive: this.recentActive,
    };
  }
}
