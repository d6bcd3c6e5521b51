import type { TaskStatusUpdate } from '../../src/api/gen/meshd/v1/dispatcher.js';
import type { TaskStatus } from '../../src/api/gen/meshd/v1/objects.js';
import type { Clock } from '../../src/common/clock.js';
import { errorMessage, MeshError } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import type { Proposer } from '../store/proposer.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import { decideStatusUpdate } from './task-updates.js';

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Collects task status reports from every session for `delayMs` and writes
 * them as few transactions (at most `maxBatch` tasks each): 500 tasks starting
 * at once cost a handful of Raft entries, not 2 000. The latest report per
 * task wins; each report is re-checked against the store at flush time (the
 * store may have moved on), so observed states stay monotonic.
 */
export class StatusBatcher {
  private pending = new Map<string, { nodeId: string; update: TaskStatusUpdate }>();
  private waiters: Waiter[] = [];
  private cancelTimer: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly opts: {
      store: StoreView;
      proposer: Proposer;
      clock: Clock;
      delayMs: number;
      maxBatch: number;
      log: Logger;
    },
  ) {}

  /** Resolves once the updates are committed (or found obsolete). */
  add(nodeId: string, updates: readonly TaskStatusUpdate[]): Promise<void> {
    if (this.stopped) return Promise.reject(new MeshError('NOT_LEADER', 'dispatcher stopped'));
    for (const u of updates) this.pending.set(u.taskId, { nodeId, update: u });
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.pending.size >= this.opts.maxBatch) this.flushSoon(0);
    else this.flushSoon(this.opts.delayMs);
    return done;
  }

  /** Accepts updates again: this manager became leader (again; a stop is not for ever). */
  start(): void {
    this.stopped = false;
  }

  stop(): void {
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.pending.clear();
    const waiters = this.waiters.splice(0);
    for (const w of waiters)
      w.reject(new MeshError('NOT_LEADER', 'dispatcher stopped before the status was written'));
  }

  private flushSoon(delayMs: number): void {
    if (this.cancelTimer !== undefined && delayMs > 0) return;
    this.cancelTimer?.();
    this.cancelTimer = this.opts.clock.setTimer(delayMs, () => {
      this.cancelTimer = undefined;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    const batch = [...this.pending.values()];
    const waiters = this.waiters.splice(0);
    this.pending.clear();
    try {
      for (let i = 0; i < batch.length; i += this.opts.maxBatch)
        await this.writeChunk(batch.slice(i, i + this.opts.maxBatch));
      for (const w of waiters) w.resolve();
    } catch (err) {
      this.opts.log.warn({ err: errorMessage(err), tasks: batch.length }, 'task status batch failed');
      for (const w of waiters) w.reject(err);
    }
  }

  private async writeChunk(chunk: { nodeId: string; update: TaskStatusUpdate }[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const tx = new TransactionBuilder(this.opts.clock.nowMs());
      for (const { nodeId, update } of chunk) {
        const stored = this.opts.store.get('task', update.taskId);
        if (!decideStatusUpdate(stored, nodeId, update.status).apply || stored === undefined) continue;
        const next = structuredClone(stored);
        next.status = {
          ...(update.status as TaskStatus),
          timestamp: update.status?.timestamp ?? { unixMs: this.opts.clock.nowMs() },
        };
        tx.update('task', next);
      }
      if (tx.size === 0) return;
      try {
        await this.opts.proposer.propose(tx.build());
        return;
      } catch (err) {
        // The orchestrator or the scheduler wrote one of these tasks meanwhile:
        // re-read and re-decide; after a few tries give up (the node retries).
        if (!(err instanceof MeshError && err.code === 'VERSION_CONFLICT') || attempt >= 4) throw err;
      }
    }
  }
}
