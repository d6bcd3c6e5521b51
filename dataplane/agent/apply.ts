import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import type { Clock } from '../../src/common/clock.js';
import { errorMessage } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import type { ApplyProgress, DataplaneTarget } from './agent.js';

interface TargetGate {
  /** Its apply ended (successfully or not): it holds no task back any more. */
  finished: boolean;
  /** It said every sandbox of the state is ready. */
  all: boolean;
  /** Tasks whose sandbox it said is ready. */
  taskIds: Set<string>;
}

/** Pure: may `taskId` start, given what each target said so far? */
export function taskMayStart(gates: readonly TargetGate[], taskId: string): boolean {
  return gates.every((g) => g.finished || g.all || g.taskIds.has(taskId));
}

/**
 * How long the rest of a target's apply (the LB after the sandboxes) may run
 * alone before tasks start beside it. A healthy LB apply takes tens of ms and
 * finishes first, so task processes starting (a second of CPU each here) do
 * not slow it: other nodes' drains rely on it (the draining node stops its
 * task `drainSettleMs` after its own apply; an e2e drain saw refused
 * connections when task starts delayed another node's LB). A slow or stuck
 * LB holds a task back this long at most.
 */
export const DEFAULT_DATAPLANE_HEAD_START_MS = 500;

/**
 * One data-plane apply of the agent: the targets in order, each beginning
 * when the one before it ended or said every sandbox is ready (the DNS needs
 * the sandboxes, not the LB rules), and per task a promise that resolves when
 * every target is done with that task's sandbox. A target's `ready('all')`
 * takes effect when its apply ends or `headStartMs` later, whichever is first.
 * A failing target is logged and does not hold tasks back: the reconciler's
 * periodic resync retries, and a task whose sandbox is missing fails to
 * start, visibly.
 */
export class DataplaneApply {
  /** Resolves when every target's apply has ended (never rejects). */
  readonly done: Promise<void>;
  private readonly gates: TargetGate[];
  private waiters: { taskId: string; resolve: () => void }[] = [];

  constructor(
    targets: readonly DataplaneTarget[],
    state: DesiredState,
    private readonly options: { log: Logger; clock: Clock; headStartMs?: number },
  ) {
    this.gates = targets.map(() => ({ finished: false, all: false, taskIds: new Set<string>() }));
    this.done = this.run(targets, state);
  }

  /** Resolves once every target is done with the sandbox of `taskId`. */
  readyFor(taskId: string): Promise<void> {
    if (taskMayStart(this.gates, taskId)) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ taskId, resolve }));
  }

  private async run(targets: readonly DataplaneTarget[], state: DesiredState): Promise<void> {
    const { log, clock } = this.options;
    const headStartMs = this.options.headStartMs ?? DEFAULT_DATAPLANE_HEAD_START_MS;
    const running: Promise<void>[] = [];
    for (const [i, target] of targets.entries()) {
      const gate = this.gates[i] as TargetGate;
      let letNextBegin = () => {};
      const nextMayBegin = new Promise<void>((resolve) => {
        letNextBegin = resolve;
      });
      let cancelHeadStart: (() => void) | undefined;
      const allReady = () => {
        gate.all = true;
        letNextBegin();
        this.wake();
      };
      const progress: ApplyProgress = {
        ready: (taskIds) => {
          if (gate.finished) return;
          if (taskIds !== 'all') {
            for (const id of taskIds) gate.taskIds.add(id);
            this.wake();
          } else if (cancelHeadStart === undefined && !gate.all) {
            cancelHeadStart = headStartMs > 0 ? clock.setTimer(headStartMs, allReady) : undefined;
            if (headStartMs <= 0) allReady();
          }
        },
      };
      const ended = (async () => {
        try {
          await target.apply(state, progress);
        } catch (err) {
          log.warn({ target: target.name, err: errorMessage(err) }, 'data-plane apply failed');
        } finally {
          cancelHeadStart?.();
          gate.finished = true;
          letNextBegin();
          this.wake();
        }
      })();
      running.push(ended);
      await nextMayBegin;
    }
    await Promise.all(running);
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      if (!taskMayStart(this.gates, w.taskId)) return true;
      w.resolve();
      return false;
    });
  }
}
