import { NodeState, TaskState, UpdateState } from '../../src/api/gen/meshd/v1/objects.js';
import type { StoreView } from '../store/types.js';
import { unknownGraceMs } from './context.js';
import { updateConfigOf } from './service-ops.js';

/**
 * When the control loop must run again even if the store does not change:
 * the earliest of restart delays ending, update delays and monitors ending,
 * and UNKNOWN graces expiring. The shell sets one timer for it (the pure
 * planners never set timers). Undefined when nothing is waiting on time.
 */
export function nextWakeMs(view: StoreView, nowMs: number): number | undefined {
  let next = Number.POSITIVE_INFINITY;
  const consider = (ms: number) => {
    if (ms > nowMs && ms < next) next = ms;
  };
  for (const t of view.find('task', 'desired', String(TaskState.TASK_STATE_READY)))
    consider(t.startAfter?.unixMs ?? 0);
  const graceMs = unknownGraceMs(view);
  for (const n of view.list('node'))
    if (n.state === NodeState.NODE_STATE_UNKNOWN || n.state === NodeState.NODE_STATE_DISCONNECTED)
      consider((n.stateChangedAt?.unixMs ?? 0) + graceMs);
  for (const s of view.list('service')) {
    const state = s.updateStatus?.state;
    const rollingBack = state === UpdateState.UPDATE_STATE_ROLLBACK_STARTED;
    if (state !== UpdateState.UPDATE_STATE_UPDATING && !rollingBack) continue;
    const config = updateConfigOf(rollingBack ? s.spec?.rollback : s.spec?.update);
    consider((s.updateStatus?.lastBatchAt?.unixMs ?? 0) + config.delayMs);
    for (const t of view.find('task', 'service', s.meta!.id))
      if (t.specVersion === s.specVersion && t.status?.state === TaskState.TASK_STATE_RUNNING)
        consider((t.status.timestamp?.unixMs ?? 0) + config.monitorMs);
  }
  return Number.isFinite(next) ? next : undefined;
}
