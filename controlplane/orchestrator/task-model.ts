import {
  type NetworkAttachment,
  type ServiceObject,
  Task,
  TaskState,
  TaskStatus,
} from '../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../src/common/errors.js';

/**
 * Swarm's task model. Observed states only move forward:
 * NEW -> PENDING -> ASSIGNED -> ACCEPTED -> PREPARING -> READY -> STARTING ->
 * RUNNING -> COMPLETE | SHUTDOWN | FAILED | REJECTED | ORPHANED. A task never
 * restarts: a restart is a new task in the same slot.
 *
 * Desired states: READY (prepare, wait: restart delay or stop-first update),
 * RUNNING, then COMPLETE (slot finished: the restart policy says do not
 * restart), SHUTDOWN (replaced or scaled away) or REMOVE (service removed).
 */
export function stateName(state: TaskState): string {
  return TaskState[state]?.replace('TASK_STATE_', '') ?? String(state);
}

export function isTerminal(state: TaskState | undefined): boolean {
  return (state ?? 0) > TaskState.TASK_STATE_RUNNING;
}

/** Wanted by the orchestrator: counts for its slot. */
export function isRunnable(t: Task): boolean {
  return t.desiredState <= TaskState.TASK_STATE_RUNNING;
}

/** Wanted and not yet stopped. */
export function isLive(t: Task): boolean {
  return isRunnable(t) && !isTerminal(t.status?.state);
}

/**
 * A new observed status for a task, as an agent reports it. Refuses a move
 * backwards (a stale or replayed report) with STATE_REGRESSION; the caller
 * drops such a report instead of resurrecting a task.
 */
export function withStatus(t: Task, state: TaskState, message: string, nowMs: number, err = ''): Task {
  const from = t.status?.state ?? TaskState.TASK_STATE_UNSPECIFIED;
  if (state < from)
    throw new MeshError(
      'STATE_REGRESSION',
      `task ${t.meta?.id}: observed state may only move forward, got ${stateName(state)} after ${stateName(from)}`,
    );
  const next = structuredClone(t);
  next.status = TaskStatus.fromPartial({ state, message, err, timestamp: { unixMs: nowMs } });
  return next;
}

/** Desired states only move forward too: a stopped task is never asked to run again. */
export function withDesired(t: Task, desired: TaskState): Task {
  if (desired < t.desiredState)
    throw new MeshError(
      'STATE_REGRESSION',
      `task ${t.meta?.id}: desired state may only move forward, got ${stateName(desired)} after ${stateName(t.desiredState)}`,
    );
  const next = structuredClone(t);
  next.desiredState = desired;
  return next;
}

export function newTaskFor(
  service: ServiceObject,
  opts: {
    id: string;
    slot: number;
    nodeId?: string;
    nowMs: number;
    desired?: TaskState;
    startAfterMs?: number;
    createdByUpdate?: boolean;
    networks?: NetworkAttachment[];
  },
): Task {
  return Task.fromPartial({
    meta: { id: opts.id },
    serviceId: service.meta!.id,
    slot: opts.slot,
    nodeId: opts.nodeId ?? '',
    desiredState: opts.desired ?? TaskState.TASK_STATE_RUNNING,
    status: { state: TaskState.TASK_STATE_NEW, message: 'created', timestamp: { unixMs: opts.nowMs } },
    specVersion: service.specVersion,
    spec: service.spec?.task,
    ...(opts.startAfterMs !== undefined ? { startAfter: { unixMs: opts.startAfterMs } } : {}),
    createdByUpdate: opts.createdByUpdate ?? false,
  });
}
