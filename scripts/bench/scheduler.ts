// npm run bench -- scheduler [--json] [--sizes 1000x1000,10000x1000]
//
// Places N tasks of one service on M nodes, the sizes swarmkit measured in
// its PR #193 (1k/1k, 10k/1k, 100k/1k, 100k/100k): the placement core alone,
// and a whole scheduler pass over the store (reading nodes and tasks,
// building the assigned tasks). The reference, measured in the same run, is a
// naive scheduler that scans every node for every task (the obvious
// O(tasks x nodes) design); the ratio says how much the heap saves.
// Times are CPU milliseconds (process.cpuUsage), robust to shared cores.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { placeGroup, type SchedNode, type TaskGroup } from '../../controlplane/scheduler/placement.js';
import { planScheduling } from '../../controlplane/scheduler/scheduler.js';
import { MemoryStore } from '../../controlplane/store/memory-store.js';
import { TransactionBuilder } from '../../controlplane/store/transaction.js';
import {
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  Task,
  TaskState,
} from '../../src/api/gen/meshd/v1/objects.js';
import type { Benchmark } from './types.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** swarmkit PR #193, same sizes (tasks x nodes). */
const SWARMKIT_MS: Record<string, number> = {
  '1000x1000': 189,
  '10000x1000': 1800,
  '100000x1000': 22_600,
  '100000x100000': 29_200,
};

function makeNode(i: number): Node {
  return Node.fromPartial({
    meta: { id: `node-${String(i).padStart(6, '0')}` },
    hostname: `host-${i}`,
    role: NodeRole.NODE_ROLE_WORKER,
    availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
    state: NodeState.NODE_STATE_READY,
    labels: { zone: `z${i % 3}` },
    resources: { nanoCpus: 1e12, memoryBytes: 1e15 },
  });
}

function schedNodes(nodes: Node[]): SchedNode[] {
  return nodes.map((node) => ({
    node,
    id: node.meta!.id,
    availableNanoCpus: node.resources!.nanoCpus,
    availableMemoryBytes: node.resources!.memoryBytes,
    totalTasks: 0,
    tasksByService: new Map(),
    hostPorts: new Set(),
    recentFailures: new Map(),
  }));
}

function group(taskCount: number): TaskGroup {
  return {
    serviceId: 'svc',
    template: {
      command: [],
      env: [],
      reservations: { nanoCpus: 1e6, memoryBytes: 1e6 },
      restart: undefined,
      health: undefined,
      placement: { constraints: ['node.role==worker'], preferences: [], maxReplicasPerNode: 0 },
      forceUpdate: 0,
    },
    hostPorts: [],
    taskIds: Array.from({ length: taskCount }, (_, i) => `task-${i}`),
  };
}

/** The reference: for each task, scan every node for the least loaded one. */
function naivePlace(nodes: SchedNode[], taskCount: number): number {
  let placed = 0;
  for (let t = 0; t < taskCount; t++) {
    let best: SchedNode | undefined;
    for (const n of nodes) {
      if (n.node.state !== NodeState.NODE_STATE_READY) continue;
      const count = n.tasksByService.get('svc') ?? 0;
      if (
        best === undefined ||
        count < (best.tasksByService.get('svc') ?? 0) ||
        (count === (best.tasksByService.get('svc') ?? 0) && n.totalTasks < best.totalTasks)
      )
        best = n;
    }
    if (best === undefined) break;
    best.tasksByService.set('svc', (best.tasksByService.get('svc') ?? 0) + 1);
    best.totalTasks++;
    placed++;
  }
  return placed;
}

/**
 * CPU time of the calling thread (user + system), not wall time: this
 * machine's cores are shared, and CPU time is what the scheduler costs.
 */
function timeMs(fn: () => void): number {
  const start = process.cpuUsage();
  fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

function storeWith(nodes: Node[], taskCount: number): MemoryStore {
  const store = new MemoryStore();
  for (let i = 0; i < nodes.length; i += 10_000) {
    const tx = new TransactionBuilder(0);
    for (const n of nodes.slice(i, i + 10_000)) tx.create('node', n);
    store.apply(tx.build());
  }
  const template = group(0).template;
  for (let i = 0; i < taskCount; i += 10_000) {
    const tx = new TransactionBuilder(0);
    for (let j = i; j < Math.min(taskCount, i + 10_000); j++)
      tx.create(
        'task',
        Task.fromPartial({
          meta: { id: `task-${String(j).padStart(7, '0')}` },
          serviceId: 'svc',
          slot: j + 1,
          specVersion: 1,
          desiredState: TaskState.TASK_STATE_RUNNING,
          status: { state: TaskState.TASK_STATE_PENDING },
          spec: template,
        }),
      );
    store.apply(tx.build());
  }
  return store;
}

const bench: Benchmark = {
  description: 'scheduler: N tasks of one service on M nodes (swarmkit PR #193 sizes)',
  async run(ctx) {
    const sizes = String(ctx.flags.get('sizes') ?? '1000x1000,10000x1000,100000x1000,100000x100000').split(
      ',',
    );
    for (const size of sizes) {
      const [taskCount, nodeCount] = size.split('x').map(Number) as [number, number];
      const nodes = Array.from({ length: nodeCount }, (_, i) => makeNode(i));
      ctx.log(`scheduler: ${taskCount} tasks on ${nodeCount} nodes`);

      gc();
      const heapBefore = process.memoryUsage().heapUsed;
      let placed = 0;
      const coreMs = timeMs(() => {
        placed = placeGroup(schedNodes(nodes), group(taskCount)).filter((d) => 'nodeId' in d).length;
      });
      const heapMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
      if (placed !== taskCount) throw new Error(`placed ${placed} of ${taskCount}`);
      ctx.report({
        metric: 'placement',
        value: coreMs,
        unit: 'ms',
        size,
        swarmkit_ms: SWARMKIT_MS[size] ?? '',
        heap_mb: Number(heapMb.toFixed(1)),
      });

      if (taskCount * nodeCount <= 1e8) {
        const naiveMs = timeMs(() => naivePlace(schedNodes(nodes), taskCount));
        ctx.report({
          metric: 'naive scan (reference)',
          value: naiveMs,
          unit: 'ms',
          size,
          ratio: Number((naiveMs / coreMs).toFixed(1)),
        });
      }

      const store = storeWith(nodes, taskCount);
      gc();
      let assigned = 0;
      const passMs = timeMs(() => {
        assigned = planScheduling(store, 0, { maxTasksPerPass: taskCount })?.size ?? 0;
      });
      if (assigned !== taskCount) throw new Error(`pass assigned ${assigned} of ${taskCount}`);
      ctx.report({
        metric: 'store pass',
        value: passMs,
        unit: 'ms',
        size,
        swarmkit_ms: SWARMKIT_MS[size] ?? '',
      });
    }
  },
};
export default bench;
