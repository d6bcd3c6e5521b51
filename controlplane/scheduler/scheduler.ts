import { PublishMode } from '../../src/api/gen/meshd/v1/dataplane.js';
import { type Task, TaskState } from '../../src/api/gen/meshd/v1/objects.js';
import { normalizedPort, portLabel } from '../allocator/config.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import { placeGroup, type SchedNode, type TaskGroup } from './placement.js';

export interface SchedulerOptions {
  /** Tasks decided per pass (one transaction); the rest wait for the next pass. */
  maxTasksPerPass: number;
  /** A failure of the service on a node within this window puts the node last for that service. */
  failureWindowMs: number;
}

export const DEFAULT_SCHEDULER_OPTIONS: SchedulerOptions = {
  maxTasksPerPass: 10_000,
  failureWindowMs: 5 * 60_000,
};

/** A task occupies its node (resources, ports, spread counts) while it is wanted and has not stopped. */
function occupiesNode(t: Task): boolean {
  return (
    t.nodeId !== '' &&
    t.desiredState <= TaskState.TASK_STATE_RUNNING &&
    (t.status?.state ?? 0) <= TaskState.TASK_STATE_RUNNING
  );
}

function isFailure(state: TaskState): boolean {
  return state === TaskState.TASK_STATE_FAILED || state === TaskState.TASK_STATE_REJECTED;
}

export function buildSchedNodes(view: StoreView, nowMs: number, failureWindowMs: number): SchedNode[] {
  const nodes = new Map<string, SchedNode>();
  for (const node of view.list('node')) {
    const id = node.meta!.id;
    nodes.set(id, {
      node,
      id,
      availableNanoCpus: node.resources?.nanoCpus ?? 0,
      availableMemoryBytes: node.resources?.memoryBytes ?? 0,
      totalTasks: 0,
      tasksByService: new Map(),
      hostPorts: new Set(),
      recentFailures: new Map(),
    });
  }
  for (const t of view.list('task')) {
    const n = nodes.get(t.nodeId);
    if (n === undefined) continue;
    if (occupiesNode(t)) {
      n.availableNanoCpus -= t.spec?.reservations?.nanoCpus ?? 0;
      n.availableMemoryBytes -= t.spec?.reservations?.memoryBytes ?? 0;
      n.totalTasks++;
      n.tasksByService.set(t.serviceId, (n.tasksByService.get(t.serviceId) ?? 0) + 1);
      for (const p of t.hostPorts) n.hostPorts.add(portLabel(p.publishedPort, p.protocol));
    } else if (
      isFailure(t.status?.state ?? 0) &&
      (t.status?.timestamp?.unixMs ?? 0) >= nowMs - failureWindowMs
    ) {
      n.recentFailures.set(t.serviceId, (n.recentFailures.get(t.serviceId) ?? 0) + 1);
    }
  }
  return [...nodes.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
}

/**
 * One scheduler pass: every PENDING task that is wanted gets a node
 * (ASSIGNED) or stays PENDING with a status message saying which filter
 * rejected how many nodes. Tasks are batched per service and spec version.
 */
export function planScheduling(
  view: StoreView,
  nowMs: number,
  options: Partial<SchedulerOptions> = {},
): TransactionBuilder | undefined {
  const opts = { ...DEFAULT_SCHEDULER_OPTIONS, ...options };
  const pending: Task[] = [];
  for (const d of [TaskState.TASK_STATE_READY, TaskState.TASK_STATE_RUNNING])
    for (const t of view.find('task', 'desired', String(d)))
      if (t.status?.state === TaskState.TASK_STATE_PENDING) pending.push(t);
  if (pending.length === 0) return undefined;
  pending.sort((a, b) =>
    a.serviceId < b.serviceId
      ? -1
      : a.serviceId > b.serviceId
        ? 1
        : a.slot - b.slot || (a.meta!.id < b.meta!.id ? -1 : 1),
  );
  const batch = pending.slice(0, opts.maxTasksPerPass);

  const groups = new Map<string, { group: TaskGroup; tasks: Task[] }>();
  for (const t of batch) {
    const bound = t.nodeId !== '';
    const key = `${t.serviceId}/${t.specVersion}/${bound}`;
    let entry = groups.get(key);
    if (entry === undefined) {
      const service = view.get('service', t.serviceId);
      const hostPorts = (service?.spec?.endpoint?.ports ?? [])
        .map(normalizedPort)
        .filter((p) => p.publishMode === PublishMode.PUBLISH_MODE_HOST && p.publishedPort !== 0)
        .map((p) => portLabel(p.publishedPort, p.protocol));
      entry = {
        group: {
          serviceId: t.serviceId,
          template: t.spec,
          hostPorts,
          taskIds: [],
          ...(bound ? { boundNodeIds: [] } : {}),
        },
        tasks: [],
      };
      groups.set(key, entry);
    }
    entry.group.taskIds.push(t.meta!.id);
    entry.group.boundNodeIds?.push(t.nodeId);
    entry.tasks.push(t);
  }

  const nodes = buildSchedNodes(view, nowMs, opts.failureWindowMs);
  const tx = new TransactionBuilder(nowMs);
  for (const { group, tasks } of groups.values()) {
    const byId = new Map(tasks.map((t) => [t.meta!.id, t]));
    const service = view.get('service', group.serviceId);
    for (const d of placeGroup(nodes, group)) {
      const t = byId.get(d.taskId)!;
      if ('nodeId' in d) {
        const next = structuredClone(t);
        next.nodeId = d.nodeId;
        next.status = {
          state: TaskState.TASK_STATE_ASSIGNED,
          message: 'scheduler assigned task to node',
          err: '',
          timestamp: { unixMs: nowMs },
        };
        next.hostPorts = (service?.spec?.endpoint?.ports ?? [])
          .map(normalizedPort)
          .filter((p) => p.publishMode === PublishMode.PUBLISH_MODE_HOST);
        tx.update('task', next);
      } else if (t.status?.message !== d.message) {
        const next = structuredClone(t);
        next.status = {
          state: TaskState.TASK_STATE_PENDING,
          message: d.message,
          err: '',
          timestamp: { unixMs: nowMs },
        };
        tx.update('task', next);
      }
    }
  }
  return tx.size > 0 ? tx : undefined;
}
