import {
  type Node,
  NodeAvailability,
  NodeState,
  ServiceMode,
  TaskState,
} from '../../src/api/gen/meshd/v1/objects.js';
import { type Constraint, constraintHolds, parseConstraints } from '../scheduler/constraints.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import { isDrained, nodeIsGone, type OrchestratorContext, sortById, unknownGraceMs } from './context.js';
import { isRunnable, newTaskFor, withDesired } from './task-model.js';

/**
 * Global services: one task per eligible node (ready, active, constraints
 * hold), re-evaluated whenever nodes or their labels change. A node that stops
 * being eligible loses its task; a paused node keeps it but gets no new one.
 * Resources are left to the scheduler so a node that is too small shows a
 * PENDING task with the reason instead of silently having none.
 */
export function planGlobal(view: StoreView, ctx: OrchestratorContext): TransactionBuilder | undefined {
  const graceMs = unknownGraceMs(view);
  const nodes = sortById(view.list('node'));
  const tx = new TransactionBuilder(ctx.nowMs);
  for (const service of sortById(view.list('service'))) {
    if (service.spec?.mode !== ServiceMode.SERVICE_MODE_GLOBAL) continue;
    let constraints: Constraint[] = [];
    try {
      constraints = parseConstraints(service.spec.task?.placement?.constraints ?? []);
    } catch {
      // Left to the scheduler, which writes the parse error on each task.
    }
    const holds = (n: Node) => constraints.every((c) => constraintHolds(n, c));
    const tasks = view.find('task', 'service', service.meta!.id);
    const covered = new Set<string>();
    for (const t of tasks) {
      if (!isRunnable(t) && t.desiredState !== TaskState.TASK_STATE_COMPLETE) continue;
      const node = view.get('node', t.nodeId);
      const keep =
        node !== undefined && !nodeIsGone(node, ctx.nowMs, graceMs) && !isDrained(node) && holds(node);
      if (keep) covered.add(t.nodeId);
      else if (isRunnable(t)) tx.update('task', withDesired(t, TaskState.TASK_STATE_SHUTDOWN));
    }
    for (const n of nodes) {
      if (covered.has(n.meta!.id)) continue;
      if (
        n.state !== NodeState.NODE_STATE_READY ||
        n.availability !== NodeAvailability.NODE_AVAILABILITY_ACTIVE ||
        !holds(n)
      )
        continue;
      tx.create(
        'task',
        newTaskFor(service, { id: ctx.newId(), slot: 0, nodeId: n.meta!.id, nowMs: ctx.nowMs }),
      );
    }
  }
  return tx.size > 0 ? tx : undefined;
}
