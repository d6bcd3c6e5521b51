import {
  type Node,
  NodeAvailability,
  NodeState,
  type Resources,
  type TaskTemplate,
} from '../../src/api/gen/meshd/v1/objects.js';
import { errorMessage } from '../../src/common/errors.js';
import { type Constraint, constraintHolds, parseConstraints, preferenceValue } from './constraints.js';
import { NodeHeap } from './heap.js';

/** What the scheduler knows about one node: the node plus what its live tasks use. */
export interface SchedNode {
  node: Node;
  id: string;
  availableNanoCpus: number;
  availableMemoryBytes: number;
  totalTasks: number;
  tasksByService: Map<string, number>;
  /** "port/proto" of host-mode ports held by tasks on this node. */
  hostPorts: Set<string>;
  /** serviceId -> failures of that service's tasks on this node in the recent window. */
  recentFailures: Map<string, number>;
}

/** Tasks of one service and spec version, placed together (one batch). */
export interface TaskGroup {
  serviceId: string;
  template: TaskTemplate | undefined;
  /** "port/proto" host-mode ports each task needs free on its node. */
  hostPorts: string[];
  taskIds: string[];
  /** Global services: the node each task is bound to (same order as taskIds). */
  boundNodeIds?: string[];
}

export type Decision = { taskId: string; nodeId: string } | { taskId: string; message: string };

type Reason = string;

/** Why a node cannot take a task of this group regardless of what else is placed; undefined when it can. */
function staticReject(
  n: SchedNode,
  constraints: Constraint[],
  need: Resources | undefined,
): Reason | undefined {
  if (n.node.state !== NodeState.NODE_STATE_READY) return 'node not ready';
  if (n.node.availability !== NodeAvailability.NODE_AVAILABILITY_ACTIVE) return 'node drained or paused';
  for (const c of constraints) if (!constraintHolds(n.node, c)) return `constraint "${c.text}" not met`;
  if (!fits(n, need)) return 'insufficient resources';
  return undefined;
}

/** Filters that change as this batch places tasks. */
function dynamicReject(
  n: SchedNode,
  g: TaskGroup,
  need: Resources | undefined,
  maxPerNode: number,
): Reason | undefined {
  if (!fits(n, need)) return 'insufficient resources';
  if (maxPerNode > 0 && (n.tasksByService.get(g.serviceId) ?? 0) >= maxPerNode)
    return `max replicas per node (${maxPerNode}) reached`;
  for (const p of g.hostPorts) if (n.hostPorts.has(p)) return `host port ${p} in use`;
  return undefined;
}

function fits(n: SchedNode, need: Resources | undefined): boolean {
  return n.availableNanoCpus >= (need?.nanoCpus ?? 0) && n.availableMemoryBytes >= (need?.memoryBytes ?? 0);
}

function take(n: SchedNode, g: TaskGroup, need: Resources | undefined): void {
  n.availableNanoCpus -= need?.nanoCpus ?? 0;
  n.availableMemoryBytes -= need?.memoryBytes ?? 0;
  n.totalTasks++;
  n.tasksByService.set(g.serviceId, (n.tasksByService.get(g.serviceId) ?? 0) + 1);
  for (const p of g.hostPorts) n.hostPorts.add(p);
}

export function noNodeMessage(rejected: Map<Reason, number>, nodeCount: number): string {
  if (nodeCount === 0) return 'no suitable node (no nodes in the cluster)';
  const parts = [...rejected].map(([why, count]) => `${why} on ${count} node${count === 1 ? '' : 's'}`);
  return `no suitable node (${parts.join('; ')})`;
}

/** A level of the placement-preference tree: spread evenly over the values of one descriptor. */
interface Branch {
  count: number;
  exhausted: boolean;
  children: Branch[] | undefined;
  heap: NodeHeap | undefined;
}

function buildTree(nodes: SchedNode[], spreads: string[], serviceId: string, depth: number): Branch {
  const count = nodes.reduce((sum, n) => sum + (n.tasksByService.get(serviceId) ?? 0), 0);
  if (depth === spreads.length)
    return { count, exhausted: false, children: undefined, heap: new NodeHeap(nodes, serviceId) };
  const byValue = new Map<string, SchedNode[]>();
  for (const n of nodes) {
    const v = preferenceValue(n.node, spreads[depth]!);
    const list = byValue.get(v) ?? [];
    list.push(n);
    byValue.set(v, list);
  }
  const children = [...byValue.keys()]
    .sort()
    .map((v) => buildTree(byValue.get(v)!, spreads, serviceId, depth + 1));
  return { count, exhausted: false, children, heap: undefined };
}

/**
 * Places one batch: static filters once per node, then each task goes to the
 * best node: least tasks of this service under the preference tree's emptiest
 * branch, then fewest of this service on the node, then fewest tasks overall;
 * nodes where the service failed recently go last. O(tasks × log nodes).
 */
export function placeGroup(nodes: SchedNode[], g: TaskGroup): Decision[] {
  let constraints: Constraint[];
  try {
    constraints = parseConstraints(g.template?.placement?.constraints ?? []);
  } catch (err) {
    return g.taskIds.map((taskId) => ({ taskId, message: errorMessage(err) }));
  }
  const need = g.template?.reservations;
  const maxPerNode = g.template?.placement?.maxReplicasPerNode ?? 0;
  const rejected = new Map<Reason, number>();
  const reject = (why: Reason) => rejected.set(why, (rejected.get(why) ?? 0) + 1);

  if (g.boundNodeIds !== undefined) return placeBound(nodes, g, constraints, need, maxPerNode);

  const eligible: SchedNode[] = [];
  for (const n of nodes) {
    const why = staticReject(n, constraints, need);
    if (why === undefined) eligible.push(n);
    else reject(why);
  }
  const spreads = (g.template?.placement?.preferences ?? []).map((p) => p.spread).filter((s) => s !== '');
  const root = buildTree(eligible, spreads, g.serviceId, 0);
  const decisions: Decision[] = [];
  for (const taskId of g.taskIds) {
    const chosen = pick(root, g, need, maxPerNode, reject);
    if (chosen === undefined) {
      const message = noNodeMessage(rejected, nodes.length);
      for (const id of g.taskIds.slice(decisions.length)) decisions.push({ taskId: id, message });
      return decisions;
    }
    decisions.push({ taskId, nodeId: chosen.id });
  }
  return decisions;
}

function pick(
  root: Branch,
  g: TaskGroup,
  need: Resources | undefined,
  maxPerNode: number,
  reject: (why: Reason) => void,
): SchedNode | undefined {
  for (;;) {
    if (root.exhausted) return undefined;
    const path: Branch[] = [root];
    let at = root;
    while (at.children !== undefined) {
      let best: Branch | undefined;
      for (const c of at.children) if (!c.exhausted && (best === undefined || c.count < best.count)) best = c;
      if (best === undefined) break;
      at = best;
      path.push(at);
    }
    const heap = at.heap;
    const n = heap?.peek();
    if (heap === undefined || n === undefined) {
      markExhausted(path);
      continue;
    }
    const why = dynamicReject(n, g, need, maxPerNode);
    heap.pop();
    if (why !== undefined) {
      reject(why);
      continue;
    }
    take(n, g, need);
    heap.push(n);
    for (const b of path) b.count++;
    return n;
  }
}

function markExhausted(path: Branch[]): void {
  for (let i = path.length - 1; i >= 0; i--) {
    const b = path[i]!;
    if (b.children === undefined || b.children.every((c) => c.exhausted)) b.exhausted = true;
    else return;
  }
}

/** Global services: each task is bound to its node; the node must still pass every filter. */
function placeBound(
  nodes: SchedNode[],
  g: TaskGroup,
  constraints: Constraint[],
  need: Resources | undefined,
  maxPerNode: number,
): Decision[] {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  return g.taskIds.map((taskId, i) => {
    const nodeId = g.boundNodeIds![i]!;
    const n = byId.get(nodeId);
    const why =
      n === undefined
        ? 'node no longer exists'
        : (staticReject(n, constraints, need) ?? dynamicReject(n, g, need, maxPerNode));
    if (why !== undefined)
      return { taskId, message: `no suitable node (${why} on node ${n?.node.hostname || nodeId})` };
    take(n!, g, need);
    return { taskId, nodeId };
  });
}

export function isEligibleForNewTasks(node: Node): boolean {
  return (
    node.state === NodeState.NODE_STATE_READY &&
    node.availability === NodeAvailability.NODE_AVAILABILITY_ACTIVE
  );
}
