// npm run sim -- orchestrator --seeds N [--seed S] [--steps K] [--json]
//
// Random clusters (nodes join, fail, drain, change labels, lose the leader),
// random services (create, scale, update, roll back, remove) and random task
// failures, driven through the real store, allocator, scheduler and
// orchestrator with a model of the agents. After every step: the safety
// invariants; at the end, after a quiet period: the liveness invariants.

import { nodeIsGone } from '../../controlplane/orchestrator/context.js';
import { ClusterHarness, FAILING_ENV } from '../../controlplane/orchestrator/harness.js';
import { checkLiveness, checkSafety } from '../../controlplane/orchestrator/invariants.js';
import { planLeadershipChange } from '../../controlplane/orchestrator/leadership.js';
import { isRunnable } from '../../controlplane/orchestrator/task-model.js';
import { PublishMode } from '../../src/api/gen/meshd/v1/dataplane.js';
import {
  NodeAvailability,
  NodeState,
  RestartCondition,
  ServiceMode,
  ServiceSpec,
  TaskState,
  UpdateFailureAction,
  UpdateOrder,
} from '../../src/api/gen/meshd/v1/objects.js';
import { errorMessage } from '../../src/common/errors.js';
import { type Rng, SeededRng } from '../../src/common/rng.js';
import type { SeedResult, Simulation } from './types.js';

const GRACE_MS = 10_000;
const ZONES = ['a', 'b', 'c'];

interface World {
  h: ClusterHarness;
  rng: Rng;
  powered: Map<string, boolean>;
  /** service ID -> the env a failed update must roll back to. */
  expectRollbackTo: Map<string, string[]>;
  nextName: number;
  /** Running tasks when the last leader change happened. */
  wantedAtLeaderChange: string[];
}

function pick<T>(rng: Rng, items: readonly T[]): T | undefined {
  return items.length === 0 ? undefined : items[rng.int(items.length)];
}

function randomSpec(w: World): ServiceSpec {
  const { rng } = w;
  const global = rng.next() < 0.25;
  const constraints =
    rng.next() < 0.3 ? [pick(rng, ['node.labels.zone==a', 'node.labels.zone!=c', 'node.role==worker'])!] : [];
  const ports =
    rng.next() < 0.3
      ? [
          {
            name: '',
            protocol: 0,
            targetPort: 80,
            publishedPort: 0,
            publishMode: PublishMode.PUBLISH_MODE_INGRESS,
            healthPort: 0,
          },
        ]
      : [];
  return ServiceSpec.fromPartial({
    name: `svc-${w.nextName++}`,
    mode: global ? ServiceMode.SERVICE_MODE_GLOBAL : ServiceMode.SERVICE_MODE_REPLICATED,
    replicas: global ? 0 : rng.int(7),
    task: {
      command: ['app'],
      env: ['V=1'],
      restart: { condition: RestartCondition.RESTART_CONDITION_ANY, delayMs: 500 },
      reservations: rng.next() < 0.2 ? { nanoCpus: 1e9, memoryBytes: 0 } : undefined,
      placement: {
        constraints,
        preferences: rng.next() < 0.3 ? [{ spread: 'node.labels.zone' }] : [],
        maxReplicasPerNode: rng.next() < 0.2 ? 2 : 0,
      },
    },
    endpoint: { mode: 0, ports },
    update: {
      parallelism: rng.int(3),
      delayMs: rng.int(2) * 500,
      monitorMs: 1000,
      failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE,
      order: rng.next() < 0.5 ? UpdateOrder.UPDATE_ORDER_STOP_FIRST : UpdateOrder.UPDATE_ORDER_START_FIRST,
    },
    rollback: {
      parallelism: 0,
      monitorMs: 1000,
      failureAction: UpdateFailureAction.UPDATE_FAILURE_ACTION_CONTINUE,
    },
  });
}

/** One random event; returns its description for violation messages. */
function randomEvent(w: World): string {
  const { h, rng } = w;
  const nodes = h.store.list('node');
  const services = h.store.list('service');
  const node = pick(rng, nodes);
  const service = pick(rng, services);
  const roll = rng.int(100);
  if (roll < 8 && nodes.length < 8) {
    const id = h.addNode(`node-${w.nextName++}`, { zone: pick(rng, ZONES)! });
    w.powered.set(id, true);
    return 'node joins';
  }
  if (roll < 16 && node !== undefined) {
    w.powered.set(node.meta!.id, false);
    h.editNode(node.meta!.id, (n) => {
      n.state = NodeState.NODE_STATE_DOWN;
    });
    return `node ${node.hostname} fails`;
  }
  if (roll < 26 && node !== undefined) {
    w.powered.set(node.meta!.id, true);
    h.editNode(node.meta!.id, (n) => {
      n.state = NodeState.NODE_STATE_READY;
    });
    return `node ${node.hostname} recovers`;
  }
  if (roll < 32 && node !== undefined) {
    const availability = pick(rng, [
      NodeAvailability.NODE_AVAILABILITY_ACTIVE,
      NodeAvailability.NODE_AVAILABILITY_ACTIVE,
      NodeAvailability.NODE_AVAILABILITY_DRAIN,
      NodeAvailability.NODE_AVAILABILITY_PAUSE,
    ])!;
    h.editNode(node.meta!.id, (n) => {
      n.availability = availability;
    });
    return `node ${node.hostname} availability ${NodeAvailability[availability]}`;
  }
  if (roll < 38 && node !== undefined) {
    const zone = pick(rng, [...ZONES, ''])!;
    h.editNode(node.meta!.id, (n) => {
      if (zone === '') delete n.labels['zone'];
      else n.labels['zone'] = zone;
    });
    return `node ${node.hostname} zone=${zone}`;
  }
  if (roll < 41 && node !== undefined && !w.powered.get(node.meta!.id)) {
    h.removeNode(node.meta!.id);
    return `node ${node.hostname} removed`;
  }
  if (roll < 45) return leaderChange(w);
  if (roll < 55 && services.length < 6) {
    h.createService(randomSpec(w));
    return 'service created';
  }
  if (service === undefined) return 'nothing';
  const id = service.meta!.id;
  const name = service.spec?.name;
  if (roll < 63 && service.spec?.mode === ServiceMode.SERVICE_MODE_REPLICATED) {
    const replicas = rng.int(8);
    h.scaleService(id, replicas);
    return `service ${name} scaled to ${replicas}`;
  }
  if (roll < 71) {
    w.expectRollbackTo.delete(id);
    h.updateService(id, (spec) => {
      spec.task!.env = [`V=${rng.int(1000)}`];
    });
    return `service ${name} updated`;
  }
  if (roll < 77) {
    const rollback = rng.next() < 0.7;
    const before = service.spec?.task?.env ?? [];
    h.updateService(id, (spec) => {
      spec.task!.env = [FAILING_ENV];
      spec.update!.failureAction = rollback
        ? UpdateFailureAction.UPDATE_FAILURE_ACTION_ROLLBACK
        : UpdateFailureAction.UPDATE_FAILURE_ACTION_PAUSE;
    });
    if (rollback && !before.includes(FAILING_ENV)) w.expectRollbackTo.set(id, before);
    else w.expectRollbackTo.delete(id);
    return `service ${name} updated to a failing spec (${rollback ? 'rollback' : 'pause'})`;
  }
  if (roll < 80 && service.previousSpec !== undefined) {
    w.expectRollbackTo.delete(id);
    h.rollbackService(id);
    return `service ${name} rolled back by hand`;
  }
  if (roll < 84) {
    w.expectRollbackTo.delete(id);
    h.removeService(id);
    return `service ${name} removed`;
  }
  const running = h.store
    .list('task')
    .filter((t) => isRunnable(t) && t.status?.state === TaskState.TASK_STATE_RUNNING);
  const victim = pick(rng, running);
  if (victim === undefined) return 'nothing';
  h.failTask(victim.meta!.id);
  return `task ${victim.meta!.id} fails`;
}

/** A new leader has heard from nobody yet: every node is UNKNOWN until it reports again. */
function leaderChange(w: World): string {
  const { h } = w;
  w.wantedAtLeaderChange = h.store
    .list('task')
    .filter((t) => isRunnable(t) && t.status?.state === TaskState.TASK_STATE_RUNNING)
    .map((t) => t.meta!.id);
  const tx = planLeadershipChange(h.store, h.nowMs);
  if (tx !== undefined) h.apply(tx);
  return 'leader change';
}

/** Agents heartbeat: powered nodes that are UNKNOWN come back; silent ones are declared DOWN after the grace. */
function heartbeats(w: World): void {
  const { h, rng } = w;
  for (const n of h.store.list('node')) {
    if (n.state !== NodeState.NODE_STATE_UNKNOWN) continue;
    if (w.powered.get(n.meta!.id) && rng.next() < 0.6)
      h.editNode(n.meta!.id, (m) => {
        m.state = NodeState.NODE_STATE_READY;
      });
    else if (!w.powered.get(n.meta!.id) && nodeIsGone(n, h.nowMs, GRACE_MS))
      h.editNode(n.meta!.id, (m) => {
        m.state = NodeState.NODE_STATE_DOWN;
      });
  }
}

/**
 * Right after a leader change, within the grace, the tasks that were wanted
 * on the nodes that turned UNKNOWN must still be wanted (unless their own
 * service changed version meanwhile).
 */
function checkGrace(w: World): string[] {
  const out: string[] = [];
  for (const id of w.wantedAtLeaderChange) {
    const t = w.h.store.get('task', id);
    const n = t === undefined ? undefined : w.h.store.get('node', t.nodeId);
    if (t === undefined || n === undefined || n.state !== NodeState.NODE_STATE_UNKNOWN) continue;
    // Deliberately not nodeIsGone(): the check must not share the code it checks.
    const graceOver = w.h.nowMs - (n.stateChangedAt?.unixMs ?? 0) >= GRACE_MS;
    if (graceOver || t.specVersion !== w.h.service(t.serviceId)?.specVersion) continue;
    if (!isRunnable(t)) out.push(`task ${id} on UNKNOWN node ${n.hostname} was shut down within the grace`);
  }
  return out;
}

/**
 * A failed update with failure action rollback ends at the previous spec: so
 * the failing spec may still be current only while its update has not seen
 * a task of it fail (nothing could be placed, or no replicas).
 */
function checkRollbacks(w: World): string[] {
  const out: string[] = [];
  for (const [id, env] of w.expectRollbackTo) {
    const s = w.h.service(id);
    if (s === undefined || JSON.stringify(s.spec?.task?.env) === JSON.stringify(env)) continue;
    const startedMs = s.updateStatus?.startedAt?.unixMs ?? 0;
    const endMs = s.updateStatus?.completedAt?.unixMs ?? Number.POSITIVE_INFINITY;
    const failedDuring = w.h.store
      .find('task', 'service', id)
      .filter((t) => t.specVersion === s.specVersion && t.status?.state === TaskState.TASK_STATE_FAILED)
      .filter(
        (t) => (t.status?.timestamp?.unixMs ?? 0) >= startedMs && (t.status?.timestamp?.unixMs ?? 0) <= endMs,
      );
    if (failedDuring.length > 0)
      out.push(
        `service ${s.spec?.name}: update with failure action rollback saw ${failedDuring.length} task(s) fail but stayed at env ${JSON.stringify(s.spec?.task?.env)}, not the previous ${JSON.stringify(env)} (update state ${s.updateStatus?.state})`,
      );
  }
  return out;
}

export function runSeed(seed: number, flags: Map<string, string | true> = new Map()): SeedResult {
  const stepsWanted = Number(flags.get('steps') ?? 60);
  const rng = new SeededRng(seed);
  const h = new ClusterHarness(rng.fork(), { unknownGraceMs: GRACE_MS, rebalanceOnJoin: rng.next() < 0.5 });
  const w: World = {
    h,
    rng,
    powered: new Map(),
    expectRollbackTo: new Map(),
    nextName: 1,
    wantedAtLeaderChange: [],
  };
  const violations: string[] = [];
  h.store.watch({ kinds: ['task'], actions: ['update'] }, (e) => {
    if (e.type !== 'object' || e.kind !== 'task' || e.previous === undefined) return;
    if ((e.object.status?.state ?? 0) < (e.previous.status?.state ?? 0))
      violations.push(`task ${e.object.meta!.id} observed state moved backwards`);
    if (e.object.desiredState < e.previous.desiredState)
      violations.push(`task ${e.object.meta!.id} desired state moved backwards`);
  });
  let steps = 0;
  const record = (where: string, found: string[]) => {
    for (const v of found.slice(0, 3)) violations.push(`${where}: ${v}`);
  };
  try {
    for (let i = 0; i < 3 + rng.int(3); i++)
      w.powered.set(h.addNode(`node-${w.nextName++}`, { zone: pick(rng, ZONES)! }), true);
    for (; steps < stepsWanted && violations.length === 0; steps++) {
      const event = randomEvent(w);
      h.tick(event === 'leader change' ? 1000 : 200 + rng.int(3000));
      const where = `step ${steps} (${event})`;
      if (event === 'leader change') record(where, checkGrace(w));
      heartbeats(w);
      h.settle();
      if (!h.lastLoop.settled)
        violations.push(
          `${where}: the control loop did not settle in ${h.lastLoop.rounds} rounds (still busy: ${h.lastLoop.busy.join(', ')})`,
        );
      record(where, checkSafety(h.store));
    }
    for (let i = 0; i < 30 && violations.length === 0; i++) {
      heartbeats(w);
      h.tick(2000);
    }
    if (violations.length === 0) {
      record('quiescence', checkSafety(h.store));
      record(
        'quiescence',
        checkLiveness(h.store, (s) => s.spec?.task?.env.includes(FAILING_ENV) === true),
      );
      record('quiescence', checkRollbacks(w));
    }
  } catch (err) {
    violations.push(`step ${steps}: exception: ${errorMessage(err)}`);
  }
  return { steps, violations };
}

const simulation: Simulation = {
  description: 'orchestrator, scheduler and allocator under random cluster and service events',
  runSeed,
};
export default simulation;
