import { RestartCondition, ServiceMode, type Task, TaskState } from '../../src/api/gen/meshd/v1/objects.js';
import { TransactionBuilder } from '../store/transaction.js';
import { type StoreView, slotKey } from '../store/types.js';
import { nodeIsGone, type OrchestratorContext, sortById, unknownGraceMs } from './context.js';
import { restartPolicyOf } from './service-ops.js';
import { isRunnable, isTerminal, newTaskFor, withDesired } from './task-model.js';

/**
 * The restart supervisor. A wanted task that stopped is retired (desired
 * SHUTDOWN) and, when its service's restart policy allows, replaced in the
 * same slot by a task that waits `delay` (desired READY until start_after).
 * When the policy says no, the slot is finished (desired COMPLETE) and the
 * reconciler leaves it alone. Also promotes waiting tasks to RUNNING once
 * their delay has passed and the task they replace has stopped (stop-first).
 */
export function planRestarts(view: StoreView, ctx: OrchestratorContext): TransactionBuilder | undefined {
  const tx = new TransactionBuilder(ctx.nowMs);
  for (const t of sortById(view.list('task'))) {
    if (!isRunnable(t) || !isTerminal(t.status?.state)) continue;
    const service = view.get('service', t.serviceId);
    if (service === undefined) continue;
    const policy = restartPolicyOf(service.spec?.task?.restart);
    const observed = t.status?.state ?? TaskState.TASK_STATE_UNSPECIFIED;
    const windowStartMs = t.restartWindowStart?.unixMs ?? ctx.nowMs;
    const windowOver = policy.windowMs > 0 && ctx.nowMs - windowStartMs >= policy.windowMs;
    const attempts = windowOver ? 0 : t.restartAttempts;
    const allowed =
      (policy.condition === RestartCondition.RESTART_CONDITION_ANY ||
        (policy.condition === RestartCondition.RESTART_CONDITION_ON_FAILURE &&
          observed !== TaskState.TASK_STATE_COMPLETE)) &&
      (policy.maxAttempts === 0 || attempts < policy.maxAttempts);
    if (!allowed) {
      tx.update('task', withDesired(t, TaskState.TASK_STATE_COMPLETE));
      continue;
    }
    tx.update('task', withDesired(t, TaskState.TASK_STATE_SHUTDOWN));
    const replacement = newTaskFor(service, {
      id: ctx.newId(),
      slot: t.slot,
      nowMs: ctx.nowMs,
      ...(service.spec?.mode === ServiceMode.SERVICE_MODE_GLOBAL ? { nodeId: t.nodeId } : {}),
      desired: policy.delayMs > 0 ? TaskState.TASK_STATE_READY : TaskState.TASK_STATE_RUNNING,
      startAfterMs: ctx.nowMs + policy.delayMs,
      createdByUpdate: t.createdByUpdate && t.specVersion === service.specVersion,
    });
    replacement.restartAttempts = attempts + 1;
    replacement.restartWindowStart = { unixMs: windowOver ? ctx.nowMs : windowStartMs };
    tx.create('task', replacement);
  }
  promoteWaitingTasks(view, ctx, tx);
  return tx.size > 0 ? tx : undefined;
}

function promoteWaitingTasks(view: StoreView, ctx: OrchestratorContext, tx: TransactionBuilder): void {
  const graceMs = unknownGraceMs(view);
  for (const t of sortById(view.find('task', 'desired', String(TaskState.TASK_STATE_READY)))) {
    if ((t.startAfter?.unixMs ?? 0) > ctx.nowMs || isTerminal(t.status?.state)) continue;
    const blocking = view.find('task', 'slot', slotKey(t)).some((o: Task) => {
      if (o.meta!.id === t.meta!.id || o.nodeId === '' || isTerminal(o.status?.state)) return false;
      if ((o.status?.state ?? 0) < TaskState.TASK_STATE_ASSIGNED) return false;
      return !nodeIsGone(view.get('node', o.nodeId), ctx.nowMs, graceMs);
    });
    if (!blocking) tx.update('task', withDesired(t, TaskState.TASK_STATE_RUNNING));
  }
}
