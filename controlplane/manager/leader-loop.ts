import type { Clock } from '../../src/common/clock.js';
import { errorMessage, MeshError } from '../../src/common/errors.js';
import { subsystemLogger } from '../../src/common/logger.js';
import { runToFixpointAsync } from '../orchestrator/control-loop.js';
import { planLeadershipChange } from '../orchestrator/leadership.js';
import { nextWakeMs } from '../orchestrator/wake.js';
import type { MemoryStore } from '../store/memory-store.js';
import type { Proposer } from '../store/proposer.js';
import type { ObjectKind, ObjectsByKind, StoreView } from '../store/types.js';

const log = subsystemLogger('manager-loop');

export interface LeaderLoopOptions {
  store: MemoryStore;
  proposer: Proposer;
  clock: Clock;
  newId: () => string;
  /** Resolves once this manager has applied everything committed before it became leader. */
  barrier: () => Promise<unknown>;
  /** First retry delay after a failed round; doubles up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
  /** Commits within this many ms share one pass (default 10). */
  coalesceMs?: number;
  /** Rounds per pass before the loop reports a livelock and backs off. */
  maxRounds?: number;
}

class LoopStopped extends MeshError {
  constructor() {
    super('MANAGER_LOOP_STOPPED', 'the control loop stopped (leadership lost) before the proposal');
  }
}

/**
 * The leader-only shell around the pure planners (allocator, scheduler,
 * orchestrator): a pass runs them to a fixpoint through the Raft proposer,
 * again after every commit (store watch), and at the time `nextWakeMs` names
 * when nothing changes but time (restart delays, update monitors, UNKNOWN
 * graces). One pass at a time; commits during a pass mark it dirty.
 */
export class LeaderControlLoop {
  private stopped = false;
  private running = false;
  private dirty = false;
  private passDue = false;
  private leaderSinceMs = 0;
  private cancelWatch: () => void = () => undefined;
  private cancelTimer: () => void = () => undefined;
  private failures = 0;
  private passes = 0;
  private readonly guarded: Proposer;

  constructor(private readonly opts: LeaderLoopOptions) {
    // Proposals after stop() are refused here, so a deposed leader's pass
    // ends at its next proposal instead of racing the new leader.
    this.guarded = {
      propose: async (tx) => {
        if (this.stopped) throw new LoopStopped();
        await opts.proposer.propose(tx);
      },
    };
  }

  /** Passes completed so far (for tests and metrics). */
  get completedPasses(): number {
    return this.passes;
  }

  start(): void {
    this.leaderSinceMs = this.opts.clock.nowMs();
    this.cancelWatch = this.opts.store.watch({ kinds: [] }, (event) => {
      if (event.type !== 'object') this.trigger();
    });
    void this.takeOver();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.cancelWatch();
    this.cancelTimer();
  }

  /**
   * A new leader first catches up with the log (its store must hold every
   * committed write before it plans), then marks nodes UNKNOWN: it has heard
   * from no agent yet (swarm's grace after a leader change).
   */
  private async takeOver(): Promise<void> {
    try {
      await this.opts.barrier();
      if (this.stopped) return;
      const tx = planLeadershipChange(this.nodesNotHeardFrom(), this.opts.clock.nowMs());
      if (tx !== undefined) await this.guarded.propose(tx.build());
    } catch (err) {
      if (this.stopped) return;
      log.warn({ err: errorMessage(err) }, 'leadership take-over failed; the control loop retries');
    }
    this.trigger();
  }

  /**
   * The store as the take-over sees it: a node whose state changed after
   * this leadership began was reported during it (a registration, a
   * heartbeat), so it is not "unheard of" and stays as it is.
   */
  private nodesNotHeardFrom(): StoreView {
    const store = this.opts.store;
    const since = this.leaderSinceMs;
    return {
      get index() {
        return store.index;
      },
      get: (kind, id) => store.get(kind, id),
      find: (kind, name, key) => store.find(kind, name, key),
      list: <K extends ObjectKind>(kind: K): ObjectsByKind[K][] =>
        kind === 'node'
          ? (store.list('node').filter((n) => (n.stateChangedAt?.unixMs ?? 0) < since) as ObjectsByKind[K][])
          : store.list(kind),
    };
  }

  private trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    // A burst of commits (agents' status batches) shares one pass; a pass
    // already due is not pushed back, so a steady stream cannot starve it.
    if (this.passDue) return;
    this.schedule(this.opts.coalesceMs ?? 10);
  }

  private schedule(delayMs: number): void {
    this.cancelTimer();
    this.passDue = true;
    this.cancelTimer = this.opts.clock.setTimer(delayMs, () => {
      this.passDue = false;
      void this.pass();
    });
  }

  private async pass(): Promise<void> {
    if (this.stopped || this.running) return;
    this.running = true;
    let retryInMs: number | undefined;
    try {
      do {
        this.dirty = false;
        const ctx = { nowMs: this.opts.clock.nowMs(), newId: this.opts.newId };
        const result = await runToFixpointAsync(
          this.opts.store,
          this.guarded,
          ctx,
          this.opts.maxRounds ?? 50,
        );
        this.passes++;
        if (!result.settled) {
          log.warn({ busy: result.busy, rounds: result.rounds }, 'control loop did not settle; backing off');
          retryInMs = this.backoffMs();
          break;
        }
        this.failures = 0;
      } while (this.dirty && !this.stopped);
    } catch (err) {
      if (!this.stopped) {
        retryInMs = this.backoffMs();
        log.warn({ err: errorMessage(err), retryInMs }, 'control loop pass failed');
      }
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (retryInMs !== undefined) return this.schedule(retryInMs);
    if (this.dirty) return this.schedule(0);
    const wakeAt = nextWakeMs(this.opts.store, this.opts.clock.nowMs());
    if (wakeAt !== undefined) {
      this.schedule(Math.max(0, wakeAt - this.opts.clock.nowMs()));
      // The wake timer is not a due pass: a commit before it runs sooner.
      this.passDue = false;
    }
  }

  private backoffMs(): number {
    this.failures++;
    const base = this.opts.retryMs ?? 100;
    return Math.min(this.opts.maxRetryMs ?? 2000, base * 2 ** Math.min(this.failures - 1, 10));
  }
}
