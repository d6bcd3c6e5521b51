import {
  NodeAvailability,
  NodeState,
  ServiceMode,
  type ServiceObject,
  type Task,
  TaskState,
  UpdateState,
} from '../../src/api/gen/meshd/v1/objects.js';
import { isClusterWidePort, portLabel } from '../allocator/config.js';
import { constraintHolds, parseConstraints } from '../scheduler/constraints.js';
import { type StoreView, slotKey } from '../store/types.js';
import { isRunnable } from './task-model.js';

/**
 * What must hold whenever the managers have settled, whatever happened
 * before: used by the simulation after every step and by tests.
 */
export function checkSafety(view: StoreView): string[] {
  const out: string[] = [];
  const tasks = view.list('task');
  const running = new Map<string, number>();
  const perNode = new Map<string, number>();
  for (const t of tasks) {
    const state = t.status?.state ?? 0;
    const id = t.meta!.id;
    if (isRunnable(t) && state === TaskState.TASK_STATE_RUNNING) {
      const key = slotKey(t);
      running.set(key, (running.get(key) ?? 0) + 1);
      if (running.get(key) === 2) {
        const both = view
          .find('task', 'slot', key)
          .filter((o) => isRunnable(o) && o.status?.state === TaskState.TASK_STATE_RUNNING);
        out.push(`slot ${key} has two running tasks: ${both.map(describe).join(' and ')}`);
      }
    }
    if (
      isRunnable(t) &&
      t.nodeId !== '' &&
      state >= TaskState.TASK_STATE_ASSIGNED &&
      state <= TaskState.TASK_STATE_RUNNING
    ) {
      const node = view.get('node', t.nodeId);
      const constraints = safeParse(t.spec?.placement?.constraints ?? []);
      if (node !== undefined && !constraints.every((c) => constraintHolds(node, c)))
        out.push(
          `task ${id} runs on node ${node.hostname} against its constraints ${constraints.map((c) => c.text).join(', ')}`,
        );
      const key = `${t.serviceId}@${t.nodeId}`;
      perNode.set(key, (perNode.get(key) ?? 0) + 1);
      const max = t.spec?.placement?.maxReplicasPerNode ?? 0;
      if (max > 0 && perNode.get(key) === max + 1)
        out.push(`service ${t.serviceId} has more than ${max} tasks on node ${t.nodeId}`);
    }
    if (
      isRunnable(t) &&
      state === TaskState.TASK_STATE_PENDING &&
      !t.status!.message.startsWith('no suitable node')
    )
      out.push(`PENDING task ${id} has no reason (message "${t.status!.message}")`);
    if (isRunnable(t) && state === TaskState.TASK_STATE_NEW && t.status!.message === 'created')
      out.push(`NEW task ${id} was never looked at by the allocator`);
  }
  out.push(...checkAddresses(view, tasks));
  return out;
}

function checkAddresses(view: StoreView, tasks: Task[]): string[] {
  const out: string[] = [];
  const seen = new Map<string, string>();
  const claim = (networkId: string, cidr: string, who: string) => {
    const key = `${networkId} ${cidr.split('/')[0]}`;
    const holder = seen.get(key);
    if (holder !== undefined) out.push(`address ${key} held by both ${holder} and ${who}`);
    seen.set(key, who);
  };
  // Spelled out, not the allocator's holdsResources(): a check must not share the code it checks.
  const stillHolds = (t: Task) => (t.status?.state ?? 0) <= TaskState.TASK_STATE_RUNNING;
  for (const t of tasks)
    if (stillHolds(t)) for (const a of t.networks) claim(a.networkId, a.address, `task ${t.meta!.id}`);
  for (const s of view.list('service'))
    for (const v of s.vips) claim(v.networkId, v.address, `service ${s.meta!.id} VIP`);
  for (const n of view.list('node'))
    for (const a of n.lbAttachments) claim(a.networkId, a.address, `node ${n.meta!.id} LB`);
  const ports = new Map<string, string>();
  for (const s of view.list('service'))
    for (const p of s.ports) {
      if (!isClusterWidePort(p)) continue;
      const label = portLabel(p.publishedPort, p.protocol);
      const holder = ports.get(label);
      if (holder !== undefined)
        out.push(`published port ${label} held by services ${holder} and ${s.meta!.id}`);
      ports.set(label, s.meta!.id);
    }
  return out;
}

/**
 * What must hold once nothing has happened for a while (quiescence): each
 * replicated service runs its replicas, each global service covers every
 * eligible node, or the missing tasks wait PENDING with a reason. Services
 * whose update is paused are skipped (a person must act), and so are those
 * the caller knows cannot run (a spec whose tasks always fail).
 */
export function checkLiveness(
  view: StoreView,
  cannotRun: (s: ServiceObject) => boolean = () => false,
): string[] {
  const out: string[] = [];
  for (const s of view.list('service')) {
    if (cannotRun(s)) continue;
    const state = s.updateStatus?.state;
    if (state === UpdateState.UPDATE_STATE_PAUSED || state === UpdateState.UPDATE_STATE_ROLLBACK_PAUSED)
      continue;
    const tasks = view.find('task', 'service', s.meta!.id).filter(isRunnable);
    const ok = (t: Task) =>
      t.status?.state === TaskState.TASK_STATE_RUNNING ||
      (t.status?.state === TaskState.TASK_STATE_PENDING && t.status.message.startsWith('no suitable node'));
    const name = s.spec?.name;
    if (s.spec?.mode === ServiceMode.SERVICE_MODE_GLOBAL) {
      const constraints = safeParse(s.spec.task?.placement?.constraints ?? []);
      for (const n of view.list('node')) {
        const eligible =
          n.state === NodeState.NODE_STATE_READY &&
          n.availability === NodeAvailability.NODE_AVAILABILITY_ACTIVE &&
          constraints.every((c) => constraintHolds(n, c));
        if (eligible && !tasks.some((t) => t.nodeId === n.meta!.id && ok(t)))
          out.push(`global service ${name} has no running or explained task on eligible node ${n.hostname}`);
      }
      continue;
    }
    const slots = new Set(tasks.filter(ok).map((t) => t.slot));
    const replicas = s.spec?.replicas ?? 0;
    if (slots.size !== replicas)
      out.push(
        `service ${name} wants ${replicas} replicas, has ${slots.size} running or explained (${tasks.length} wanted tasks)`,
      );
  }
  return out;
}

function safeParse(texts: string[]) {
  try {
    return parseConstraints(texts);
  } catch {
    return [];
  }
}

function describe(t: Task): string {
  return `${t.meta!.id} (spec v${t.specVersion}, node ${t.nodeId}, created ${t.meta?.createdAt?.unixMs}, status at ${t.status?.timestamp?.unixMs})`;
}
