import type { ClusterSpec } from '../../src/api/gen/meshd/v1/objects.js';
import {
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  type ServiceObject,
  type ServiceSpec,
  TaskState,
} from '../../src/api/gen/meshd/v1/objects.js';
import { newIdFrom } from '../../src/common/ids.js';
import type { Rng } from '../../src/common/rng.js';
import { bootstrapCluster } from '../allocator/config.js';
import { MemoryStore } from '../store/memory-store.js';
import { InMemoryProposer } from '../store/proposer.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { OrchestratorContext } from './context.js';
import { type LoopResult, runToFixpoint } from './control-loop.js';
import { newService, rollbackService, scaleService, updateService } from './service-ops.js';
import { isTerminal, withStatus } from './task-model.js';

/** A task whose env holds this starts and fails at once (a bad image, for update tests). */
export const FAILING_ENV = 'MESHD_SIM_FAIL=1';

/**
 * A whole cluster in one process, for tests and simulations (never used by
 * the daemon): one store behind an in-memory proposer, the control loop, and
 * a model of the agents: a task assigned to a ready node starts (or fails, if
 * its env has FAILING_ENV), a task asked to stop stops. Nodes that are not
 * READY report nothing. Time only moves through `tick`.
 */
export class ClusterHarness {
  readonly store = new MemoryStore();
  private readonly proposer = new InMemoryProposer(this.store);
  nowMs = 1_000_000;
  lastLoop: LoopResult = { rounds: 0, transactions: 0, settled: true };

  constructor(
    private readonly rng: Rng,
    clusterSpec: Partial<ClusterSpec> = {},
  ) {
    this.apply(
      bootstrapCluster({
        nowMs: this.nowMs,
        clusterId: this.newId(),
        ingressNetworkId: this.newId(),
        spec: clusterSpec,
      }),
    );
  }

  newId(): string {
    return newIdFrom(this.rng);
  }

  get ctx(): OrchestratorContext {
    return { nowMs: this.nowMs, newId: () => this.newId() };
  }

  apply(tx: TransactionBuilder): void {
    this.proposer.proposeSync(tx.build());
  }

  addNode(hostname: string, labels: Record<string, string> = {}, extra: Partial<Node> = {}): string {
    const id = this.newId();
    const node = Node.fromPartial({
      meta: { id },
      hostname,
      role: NodeRole.NODE_ROLE_WORKER,
      availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
      labels,
      resources: { nanoCpus: 4e9, memoryBytes: 8 * 2 ** 30 },
      state: NodeState.NODE_STATE_READY,
      stateChangedAt: { unixMs: this.nowMs },
    });
    this.apply(new TransactionBuilder(this.nowMs).create('node', { ...node, ...extra }));
    return id;
  }

  editNode(id: string, edit: (n: Node) => void): void {
    const next = structuredClone(this.store.get('node', id)!);
    const before = next.state;
    edit(next);
    if (next.state !== before) next.stateChangedAt = { unixMs: this.nowMs };
    this.apply(new TransactionBuilder(this.nowMs).update('node', next));
  }

  removeNode(id: string): void {
    this.apply(new TransactionBuilder(this.nowMs).delete('node', this.store.get('node', id)!));
  }

  createService(spec: ServiceSpec): string {
    const id = this.newId();
    this.apply(new TransactionBuilder(this.nowMs).create('service', newService(id, spec)));
    return id;
  }

  service(id: string): ServiceObject | undefined {
    return this.store.get('service', id);
  }

  updateService(id: string, edit: (spec: ServiceSpec) => void): void {
    const current = this.service(id)!;
    const spec = structuredClone(current.spec!);
    edit(spec);
    this.apply(
      new TransactionBuilder(this.nowMs).update('service', updateService(current, spec, this.nowMs)),
    );
  }

  scaleService(id: string, replicas: number): void {
    this.apply(
      new TransactionBuilder(this.nowMs).update('service', scaleService(this.service(id)!, replicas)),
    );
  }

  rollbackService(id: string): void {
    this.apply(
      new TransactionBuilder(this.nowMs).update('service', rollbackService(this.service(id)!, this.nowMs)),
    );
  }

  removeService(id: string): void {
    this.apply(new TransactionBuilder(this.nowMs).delete('service', this.service(id)!));
  }

  /** A running task dies (exit code 1). */
  failTask(id: string, message = 'task exited with code 1'): void {
    const t = this.store.get('task', id)!;
    this.apply(
      new TransactionBuilder(this.nowMs).update(
        'task',
        withStatus(t, TaskState.TASK_STATE_FAILED, message, this.nowMs, 'exit 1'),
      ),
    );
  }

  /** Moves time forward, then lets managers and agents act until nothing changes. */
  tick(deltaMs: number): void {
    this.nowMs += deltaMs;
    this.settle();
  }

  settle(maxIterations = 50): void {
    for (let i = 0; i < maxIterations; i++) {
      this.lastLoop = runToFixpoint(this.store, (tx) => this.proposer.proposeSync(tx), this.ctx);
      if (!this.agentsAct()) return;
    }
  }

  /** One round of every agent's status reports; true when anything changed. */
  agentsAct(): boolean {
    const tx = new TransactionBuilder(this.nowMs);
    for (const t of this.store.list('task')) {
      const node = this.store.get('node', t.nodeId);
      if (node === undefined || node.state !== NodeState.NODE_STATE_READY) continue;
      const observed = t.status?.state ?? 0;
      if (observed < TaskState.TASK_STATE_ASSIGNED || isTerminal(observed)) continue;
      if (t.desiredState > TaskState.TASK_STATE_RUNNING) {
        tx.update('task', withStatus(t, TaskState.TASK_STATE_SHUTDOWN, 'shut down', this.nowMs));
      } else if (observed < TaskState.TASK_STATE_RUNNING) {
        if (t.spec?.env.includes(FAILING_ENV))
          tx.update(
            'task',
            withStatus(
              t,
              TaskState.TASK_STATE_FAILED,
              'task exited with code 1 right after start',
              this.nowMs,
              'exit 1',
            ),
          );
        else if (t.desiredState === TaskState.TASK_STATE_RUNNING)
          tx.update('task', withStatus(t, TaskState.TASK_STATE_RUNNING, 'started', this.nowMs));
        else if (observed < TaskState.TASK_STATE_READY)
          tx.update('task', withStatus(t, TaskState.TASK_STATE_READY, 'prepared', this.nowMs));
      }
    }
    if (tx.size === 0) return false;
    this.apply(tx);
    return true;
  }

  /** Tasks of a service that are wanted and running, by node ID. */
  runningByNode(serviceId: string): Map<string, number> {
    const out = new Map<string, number>();
    for (const t of this.store.find('task', 'service', serviceId))
      if (t.desiredState === TaskState.TASK_STATE_RUNNING && t.status?.state === TaskState.TASK_STATE_RUNNING)
        out.set(t.nodeId, (out.get(t.nodeId) ?? 0) + 1);
    return out;
  }

  runningCount(serviceId: string): number {
    return [...this.runningByNode(serviceId).values()].reduce((a, b) => a + b, 0);
  }
}
