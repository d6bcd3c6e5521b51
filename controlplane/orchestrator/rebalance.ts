import {
  NodeAvailability,
  NodeState,
  ServiceMode,
  TaskState,
  UpdateState,
} from '../../src/api/gen/meshd/v1/objects.js';
import { type Constraint, constraintHolds, parseConstraints } from '../scheduler/constraints.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import { type OrchestratorContext, sortById } from './context.js';
import { isRunnable, newTaskFor } from './task-model.js';

/**
 * Opt-in (`Cluster.spec.rebalance_on_join`): swarm never moves running
 * tasks onto a node that joins or returns (swarmkit#1296). When a settled
 * replicated service (no update running, every task RUNNING) has a node with
 * at least two tasks more than an eligible node, one task moves per service
 * per pass, start-first: a new task in the same slot, which the scheduler
 * places on the emptier node; the old one stops once the new one runs.
 */
export function planRebalance(view: StoreView, ctx: OrchestratorContext): TransactionBuilder | undefined {
  if (view.list('cluster')[0]?.spec?.rebalanceOnJoin !== true) return undefined;
  const nodes = view
    .list('node')
    .filter(
      (n) =>
        n.state === NodeState.NODE_STATE_READY &&
        n.availability === NodeAvailability.NODE_AVAILABILITY_ACTIVE,
    );
  const tx = new TransactionBuilder(ctx.nowMs);
  for (const service of sortById(view.list('service'))) {
    if (service.spec?.mode === ServiceMode.SERVICE_MODE_GLOBAL) continue;
    const updating =
      service.updateStatus?.state === UpdateState.UPDATE_STATE_UPDATING ||
      service.updateStatus?.state === UpdateState.UPDATE_STATE_ROLLBACK_STARTED;
    const live = view.find('task', 'service', service.meta!.id).filter(isRunnable);
    if (updating || live.length === 0 || live.some((t) => t.status?.state !== TaskState.TASK_STATE_RUNNING))
      continue;
    if (new Set(live.map((t) => t.slot)).size !== live.length) continue;
    let constraints: Constraint[];
    try {
      constraints = parseConstraints(service.spec?.task?.placement?.constraints ?? []);
    } catch {
      continue;
    }
    const eligible = nodes.filter((n) => constraints.every((c) => constraintHolds(n, c)));
    if (eligible.length < 2) continue;
    const counts = new Map(eligible.map((n) => [n.meta!.id, 0]));
    for (const t of live) if (counts.has(t.nodeId)) counts.set(t.nodeId, counts.get(t.nodeId)! + 1);
    const sorted = [...counts.entries()].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
    const [, min] = sorted[0]!;
    const [busiest, max] = sorted[sorted.length - 1]!;
    if (max - min < 2) continue;
    const mover = live.filter((t) => t.nodeId === busiest).sort((a, b) => b.slot - a.slot)[0]!;
    tx.create('task', newTaskFor(service, { id: ctx.newId(), slot: mover.slot, nowMs: ctx.nowMs }));
  }
  return tx.size > 0 ? tx : undefined;
}
