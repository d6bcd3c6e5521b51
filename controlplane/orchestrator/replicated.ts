import { ServiceMode, type Task, TaskState } from '../../src/api/gen/meshd/v1/objects.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import { bySlot, type OrchestratorContext, sortById } from './context.js';
import { isRunnable, newTaskFor, withDesired } from './task-model.js';

/** New tasks per pass; the rest come in the next pass (bounded transactions). */
export const MAX_NEW_TASKS_PER_PASS = 5_000;

/** A slot counts while it has a wanted task, or its last task finished and must not restart. */
function slotIsOccupied(tasks: Task[]): boolean {
  return tasks.some((t) => isRunnable(t) || t.desiredState === TaskState.TASK_STATE_COMPLETE);
}

/**
 * Replicated services: exactly `replicas` occupied slots. Missing slots get a
 * new task (lowest free slot number first); extra slots are shut down,
 * finished and not-yet-running ones first, then those on the nodes with most
 * tasks of the service. Derived from the store each pass, so a restarted
 * leader cannot create duplicates (swarmkit#1054).
 */
export function planReplicated(view: StoreView, ctx: OrchestratorContext): TransactionBuilder | undefined {
  const tx = new TransactionBuilder(ctx.nowMs);
  let created = 0;
  for (const service of sortById(view.list('service'))) {
    if (service.spec?.mode === ServiceMode.SERVICE_MODE_GLOBAL) continue;
    const replicas = service.spec?.replicas ?? 0;
    const slots = bySlot(view.find('task', 'service', service.meta!.id).filter((t) => t.slot > 0));
    const occupied = [...slots.entries()].filter(([, tasks]) => slotIsOccupied(tasks));
    if (occupied.length < replicas) {
      const used = new Set(occupied.map(([, tasks]) => tasks[0]!.slot));
      for (
        let slot = 1, missing = replicas - occupied.length;
        missing > 0 && created < MAX_NEW_TASKS_PER_PASS;
        slot++
      ) {
        if (used.has(slot)) continue;
        tx.create('task', newTaskFor(service, { id: ctx.newId(), slot, nowMs: ctx.nowMs }));
        missing--;
        created++;
      }
    } else if (occupied.length > replicas) {
      const perNode = new Map<string, number>();
      for (const [, tasks] of occupied)
        for (const t of tasks) if (isRunnable(t)) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 0) + 1);
      const rank = (tasks: Task[]): number[] => {
        const live = tasks.find(isRunnable);
        if (live === undefined) return [0, 0, 0];
        const running = live.status?.state === TaskState.TASK_STATE_RUNNING ? 1 : 0;
        return [1, running, -(perNode.get(live.nodeId) ?? 0)];
      };
      const victims = occupied
        .map(([, tasks]) => ({ tasks, rank: rank(tasks), slot: tasks[0]!.slot }))
        .sort(
          (a, b) =>
            a.rank[0]! - b.rank[0]! || a.rank[1]! - b.rank[1]! || a.rank[2]! - b.rank[2]! || b.slot - a.slot,
        )
        .slice(0, occupied.length - replicas);
      for (const v of victims) {
        for (const t of v.tasks)
          if (isRunnable(t) || t.desiredState === TaskState.TASK_STATE_COMPLETE) {
            tx.update('task', withDesired(t, TaskState.TASK_STATE_SHUTDOWN));
            if (isRunnable(t)) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 1) - 1);
          }
      }
    }
  }
  return tx.size > 0 ? tx : undefined;
}
