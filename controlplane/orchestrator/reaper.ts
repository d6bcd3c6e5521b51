import { NodeState, TaskState } from '../../src/api/gen/meshd/v1/objects.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import { type OrchestratorContext, sortById } from './context.js';
import { isRunnable, isTerminal, withDesired, withStatus } from './task-model.js';

/** Tasks on a node that has been DOWN this long are given up (swarm: 24 h). */
export const ORPHAN_AFTER_MS = 24 * 60 * 60_000;

/**
 * The task reaper, for what no agent will ever report:
 * - tasks of a removed service are asked to go (desired REMOVE), then deleted
 *   once stopped;
 * - unwanted tasks that never reached a node are marked SHUTDOWN at once;
 * - tasks on a removed node, or a node down for ORPHAN_AFTER_MS, are ORPHANED
 *   (which releases their addresses).
 * The per-slot history bound itself is enforced by the store.
 */
export function planReaper(view: StoreView, ctx: OrchestratorContext): TransactionBuilder | undefined {
  const tx = new TransactionBuilder(ctx.nowMs);
  for (const t of sortById(view.list('task'))) {
    const observed = t.status?.state ?? TaskState.TASK_STATE_UNSPECIFIED;
    const serviceGone = view.get('service', t.serviceId) === undefined;
    if (serviceGone && isRunnable(t)) {
      tx.update('task', withDesired(t, TaskState.TASK_STATE_REMOVE));
      continue;
    }
    if (isTerminal(observed)) {
      if (serviceGone || t.desiredState === TaskState.TASK_STATE_REMOVE) tx.delete('task', t);
      continue;
    }
    if (!isRunnable(t) && observed < TaskState.TASK_STATE_ASSIGNED) {
      tx.update(
        'task',
        withStatus(t, TaskState.TASK_STATE_SHUTDOWN, 'stopped before it was placed', ctx.nowMs),
      );
      continue;
    }
    if (t.nodeId === '' || observed < TaskState.TASK_STATE_ASSIGNED) continue;
    const node = view.get('node', t.nodeId);
    const longDown =
      node?.state === NodeState.NODE_STATE_DOWN &&
      ctx.nowMs - (node.stateChangedAt?.unixMs ?? 0) >= ORPHAN_AFTER_MS;
    if (node === undefined || longDown) {
      const why = node === undefined ? 'its node was removed' : 'its node has been down for 24 h';
      tx.update('task', withStatus(t, TaskState.TASK_STATE_ORPHANED, `task orphaned: ${why}`, ctx.nowMs));
    }
  }
  return tx.size > 0 ? tx : undefined;
}
