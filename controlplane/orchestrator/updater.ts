import {
  type ServiceObject,
  type Task,
  TaskState,
  UpdateFailureAction,
  UpdateOrder,
  UpdateState,
} from '../../src/api/gen/meshd/v1/objects.js';
import { TransactionBuilder } from '../store/transaction.js';
import { type StoreView, slotKey } from '../store/types.js';
import { bySlot, type OrchestratorContext, sortById } from './context.js';
import { rollbackService, updateConfigOf } from './service-ops.js';
import { isRunnable, isTerminal, newTaskFor, withDesired } from './task-model.js';

function isFailed(t: Task): boolean {
  const s = t.status?.state;
  return s === TaskState.TASK_STATE_FAILED || s === TaskState.TASK_STATE_REJECTED;
}

/**
 * The rolling updater. Replaces tasks whose spec version is old, at most
 * `parallelism` not-yet-healthy new tasks at a time, `delay` between batches.
 * A new task is healthy once it has been RUNNING for `monitor`. When more than
 * `max_failure_ratio` of the new tasks fail, the failure action applies:
 * pause, continue, or roll back to the previous spec. Also, in any slot where
 * a task of the current version runs, older tasks of that slot are stopped
 * (the end of a start-first overlap; and no slot keeps two tasks).
 */
export function planUpdates(view: StoreView, ctx: OrchestratorContext): TransactionBuilder | undefined {
  const tx = new TransactionBuilder(ctx.nowMs);
  for (const service of sortById(view.list('service'))) {
    const tasks = view.find('task', 'service', service.meta!.id);
    stopSupersededTasks(service, tasks, tx);
    const state = service.updateStatus?.state;
    if (state === UpdateState.UPDATE_STATE_UPDATING || state === UpdateState.UPDATE_STATE_ROLLBACK_STARTED)
      advanceUpdate(service, tasks, ctx, tx);
  }
  return tx.size > 0 ? tx : undefined;
}

function stopSupersededTasks(service: ServiceObject, tasks: Task[], tx: TransactionBuilder): void {
  for (const slotTasks of bySlot(tasks).values()) {
    const runnable = slotTasks.filter(isRunnable);
    if (runnable.length < 2) continue;
    // The newest running task of the current version wins (a rebalance
    // move's new task, a start-first update's new task).
    const winner = runnable
      .filter(
        (t) => t.specVersion === service.specVersion && t.status?.state === TaskState.TASK_STATE_RUNNING,
      )
      .sort((a, b) => newerFirst(a, b))[0];
    if (winner === undefined) continue;
    for (const t of runnable)
      if (t !== winner) tx.update('task', withDesired(t, TaskState.TASK_STATE_SHUTDOWN));
  }
}

function newerFirst(a: Task, b: Task): number {
  const ts = (t: Task) => [t.status?.timestamp?.unixMs ?? 0, t.meta?.createdAt?.unixMs ?? 0];
  const [ra, ca] = ts(a);
  const [rb, cb] = ts(b);
  return rb! - ra! || cb! - ca! || (a.meta!.id < b.meta!.id ? -1 : 1);
}

function advanceUpdate(
  service: ServiceObject,
  tasks: Task[],
  ctx: OrchestratorContext,
  tx: TransactionBuilder,
): void {
  const rollingBack = service.updateStatus?.state === UpdateState.UPDATE_STATE_ROLLBACK_STARTED;
  const config = updateConfigOf(rollingBack ? service.spec?.rollback : service.spec?.update);
  const startedMs = service.updateStatus?.startedAt?.unixMs ?? 0;
  const updated = tasks.filter((t) => t.specVersion === service.specVersion && t.createdByUpdate);
  const failed = updated.filter((t) => isFailed(t) && (t.status?.timestamp?.unixMs ?? 0) >= startedMs);
  const ratio = failed.length / Math.max(1, updated.length);
  if (
    failed.length > 0 &&
    ratio > config.maxFailureRatio &&
    config.failureAction !== UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE
  ) {
    const why = `${failed.length} of ${updated.length} updated tasks failed (task ${failed[0]!.meta!.id}: ${failed[0]!.status?.message || 'failed'})`;
    if (config.failureAction === UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK && !rollingBack) {
      tx.update('service', rollbackService(service, ctx.nowMs, `update failed: ${why}`));
    } else {
      const next = structuredClone(service);
      next.updateStatus!.state = rollingBack
        ? UpdateState.UPDATE_STATE_ROLLBACK_PAUSED
        : UpdateState.UPDATE_STATE_PAUSED;
      next.updateStatus!.message = `${rollingBack ? 'rollback' : 'update'} paused: ${why}`;
      tx.update('service', next);
    }
    return;
  }

  const inflight = updated.filter(
    (t) =>
      isRunnable(t) &&
      !(
        t.status?.state === TaskState.TASK_STATE_RUNNING &&
        ctx.nowMs - (t.status.timestamp?.unixMs ?? 0) >= config.monitorMs
      ),
  ).length;
  const dirty = [
    ...bySlot(tasks.filter((t) => isRunnable(t) && t.specVersion !== service.specVersion)).entries(),
  ]
    .filter(
      ([key]) =>
        !tasks.some((t) => slotKey(t) === key && isRunnable(t) && t.specVersion === service.specVersion),
    )
    .sort(([a], [b]) => (a < b ? -1 : 1));
  if (dirty.length === 0 && inflight === 0) {
    const next = structuredClone(service);
    next.updateStatus!.state = rollingBack
      ? UpdateState.UPDATE_STATE_ROLLBACK_COMPLETED
      : UpdateState.UPDATE_STATE_COMPLETED;
    next.updateStatus!.completedAt = { unixMs: ctx.nowMs };
    next.updateStatus!.message = rollingBack ? 'rollback completed' : 'update completed';
    tx.update('service', next);
    return;
  }
  const lastBatchMs = service.updateStatus?.lastBatchAt?.unixMs;
  if (dirty.length === 0 || (lastBatchMs !== undefined && ctx.nowMs < lastBatchMs + config.delayMs)) return;
  const room = (config.parallelism === 0 ? Number.POSITIVE_INFINITY : config.parallelism) - inflight;
  if (room <= 0) return;
  const startFirst = config.order === UpdateOrder.UPDATE_ORDER_START_FIRST;
  for (const [, old] of dirty.slice(0, room)) {
    const first = old[0]!;
    if (!startFirst) for (const t of old) tx.update('task', withDesired(t, TaskState.TASK_STATE_SHUTDOWN));
    tx.create(
      'task',
      newTaskFor(service, {
        id: ctx.newId(),
        slot: first.slot,
        ...(first.slot === 0 ? { nodeId: first.nodeId } : {}),
        nowMs: ctx.nowMs,
        desired:
          startFirst || old.every((t) => isTerminal(t.status?.state))
            ? TaskState.TASK_STATE_RUNNING
            : TaskState.TASK_STATE_READY,
        createdByUpdate: true,
      }),
    );
  }
  const next = structuredClone(service);
  next.updateStatus!.lastBatchAt = { unixMs: ctx.nowMs };
  tx.update('service', next);
}
