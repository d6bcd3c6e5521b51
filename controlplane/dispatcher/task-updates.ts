import { type Task, TaskState, type TaskStatus } from '../../src/api/gen/meshd/v1/objects.js';

/**
 * Pure rules for what a node is told about its tasks and what it may report.
 *
 * A node's task list holds its tasks from ASSIGNED until their observed state
 * is terminal (COMPLETE and after): the agent runs the ones desired RUNNING and
 * drains then stops the others; a task that leaves the list is stopped too.
 */
export function tasksForNode(tasks: readonly Task[], nodeId: string): Task[] {
  return tasks
    .filter((t) => {
      const s = t.status?.state ?? TaskState.TASK_STATE_UNSPECIFIED;
      return t.nodeId === nodeId && s >= TaskState.TASK_STATE_ASSIGNED && s < TaskState.TASK_STATE_COMPLETE;
    })
    .sort((a, b) => ((a.meta?.id ?? '') < (b.meta?.id ?? '') ? -1 : 1));
}

/** Tasks to send again (new or changed version) and IDs that left the list. */
export function diffTaskLists(
  before: readonly Task[],
  after: readonly Task[],
): { upsert: Task[]; remove: string[] } {
  const old = new Map(before.map((t) => [t.meta?.id ?? '', t.meta?.version?.index ?? 0]));
  const upsert: Task[] = [];
  for (const t of after) {
    const id = t.meta?.id ?? '';
    if (old.get(id) !== (t.meta?.version?.index ?? 0)) upsert.push(t);
    old.delete(id);
  }
  return { upsert, remove: [...old.keys()].sort() };
}

export type StatusDecision = { apply: true } | { apply: false; reason: string };

/**
 * Whether a node's status report may change a stored task. Observed states
 * only move forward (a late or repeated report never rewinds RUNNING to
 * STARTING, nor revives a FAILED task); a node reports only its own tasks.
 */
export function decideStatusUpdate(
  task: Task | undefined,
  reporterNodeId: string,
  status: TaskStatus | undefined,
): StatusDecision {
  if (task === undefined) return { apply: false, reason: 'task does not exist' };
  if (task.nodeId !== reporterNodeId)
    return { apply: false, reason: `task is assigned to node "${task.nodeId}", not to the reporter` };
  const next = status?.state ?? TaskState.TASK_STATE_UNSPECIFIED;
  if (next < TaskState.TASK_STATE_ACCEPTED || next > TaskState.TASK_STATE_REJECTED)
    return { apply: false, reason: `state ${TaskState[next] ?? next} is not one a node may report` };
  const current = task.status?.state ?? TaskState.TASK_STATE_UNSPECIFIED;
  if (next < current)
    return {
      apply: false,
      reason: `state ${TaskState[next]} is older than the stored ${TaskState[current] ?? current}`,
    };
  if (next === current && status?.message === task.status?.message && status?.err === task.status?.err)
    return { apply: false, reason: 'no change' };
  if (current >= TaskState.TASK_STATE_COMPLETE && next !== current)
    return { apply: false, reason: `task is already terminal (${TaskState[current]})` };
  return { apply: true };
}
