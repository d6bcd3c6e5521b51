import type * as api from '../../src/api/gen/meshd/v1/control.js';
import {
  ClusterSpec,
  NetworkObject,
  NodeRole,
  NodeState,
  ServiceSpec,
  TaskState,
} from '../../src/api/gen/meshd/v1/objects.js';
import { type Clock, systemClock } from '../../src/common/clock.js';
import { MeshError, ValidationError } from '../../src/common/errors.js';
import { newId as randomId } from '../../src/common/ids.js';
import { checkPublishedPorts } from '../allocator/validate.js';
import { newService, rollbackService, scaleService, updateService } from '../orchestrator/service-ops.js';
import { validateServiceSpec } from '../orchestrator/validate-spec.js';
import type { Proposer } from '../store/proposer.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { ObjectKind, ObjectsByKind, StoreView } from '../store/types.js';
import { idOf, resolveOptional, resolveRef } from './resolve.js';
import {
  checkAvailability,
  checkClusterSpec,
  checkLabels,
  checkNetworkName,
  checkRequestedPorts,
  checkRole,
  checkSubnet,
} from './validate.js';

const DEFAULT_RETRY_FOR_MS = 8000;
const RETRY_FIRST_DELAY_MS = 50;
const RETRY_MAX_DELAY_MS = 500;

/** What the control API needs from a manager (ManagerNode provides it). */
export interface ControlBackend {
  readonly store: StoreView;
  readonly proposer: Proposer;
  /** ReadIndex barrier: afterwards `store` holds every write committed before the call. */
  linearizableRead(): Promise<void>;
}

/**
 * The control API's decisions, one method per RPC, transport-free (the gRPC
 * shell is grpc-service.ts). Writes: a ReadIndex barrier first, so even a
 * follower validates against current state; then one transaction through
 * the proposer (Raft forwards a follower's proposal to the leader); the
 * store's version and name checks catch anything that raced in between.
 * Reads: a ReadIndex barrier unless `read.local_read`.
 */
export class ControlApi {
  private readonly clock: Clock;
  private readonly newId: () => string;
  private readonly retryForMs: number;

  constructor(
    private readonly backend: ControlBackend,
    opts: { clock?: Clock; newId?: () => string; retryForMs?: number } = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.newId = opts.newId ?? randomId;
    this.retryForMs = opts.retryForMs ?? DEFAULT_RETRY_FOR_MS;
  }

  /**
   * Retries `fn` while it fails with a Raft error that `retriable` accepts,
   * for up to `retryForMs` (an election after a leader dies takes one to two
   * election timeouts): callers see a slow answer, not an error.
   */
  private async retrying<T>(fn: () => Promise<T>, retriable: (code: string) => boolean): Promise<T> {
    const deadline = this.clock.nowMs() + this.retryForMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const code = err instanceof MeshError ? err.code : '';
        if (!retriable(code) || this.clock.nowMs() >= deadline) throw err;
        const delayMs = Math.min(RETRY_MAX_DELAY_MS, RETRY_FIRST_DELAY_MS * 2 ** attempt);
        await new Promise<void>((resolve) => this.clock.setTimer(delayMs, resolve));
      }
    }
  }

  /** ReadIndex barrier; it writes nothing, so any Raft failure is retried. */
  private barrier(): Promise<void> {
    return this.retrying(
      () => this.backend.linearizableRead(),
      (code) => code.startsWith('RAFT_') && code !== 'RAFT_NODE_STOPPED',
    );
  }

  /**
   * Only a proposal Raft refused outright (no leader known) is retried: after
   * a timeout or a leader change it may still commit, and the caller must
   * read before trying again.
   */
  private propose(tx: TransactionBuilder): Promise<void> {
    const built = tx.build();
    return this.retrying(
      () => this.backend.proposer.propose(built),
      (code) => code === 'RAFT_PROPOSAL_DROPPED',
    );
  }

  private get view(): StoreView {
    return this.backend.store;
  }

  private async read(options: api.ReadOptions | undefined): Promise<void> {
    if (options?.localRead !== true) await this.barrier();
  }

  private tx(): TransactionBuilder {
    return new TransactionBuilder(this.clock.nowMs());
  }

  /** Commits `tx` and returns the object as stored after it. */
  private async commit<K extends ObjectKind>(
    tx: TransactionBuilder,
    kind: K,
    id: string,
  ): Promise<ObjectsByKind[K]> {
    await this.propose(tx);
    const stored = this.view.get(kind, id);
    if (stored === undefined) throw new MeshError('NOT_FOUND', `${kind} ${id} was removed concurrently`);
    return stored;
  }

  /** The version a write is based on: the caller's, or the current one when the caller gave 0. */
  private withVersion<T extends { meta?: { version?: { index: number } | undefined } | undefined }>(
    current: T,
    version: number,
  ): T {
    const next = structuredClone(current);
    if (version !== 0 && next.meta !== undefined) next.meta.version = { index: version };
    return next;
  }

  async getCluster(req: api.GetClusterRequest): Promise<api.GetClusterResponse> {
    await this.read(req.read);
    return { cluster: this.cluster() };
  }

  async updateCluster(req: api.UpdateClusterRequest): Promise<api.UpdateClusterResponse> {
    const spec = req.spec === undefined ? undefined : ClusterSpec.fromPartial(req.spec);
    checkClusterSpec(spec);
    await this.barrier();
    const next = this.withVersion(this.cluster(), req.version);
    next.spec = spec;
    return { cluster: await this.commit(this.tx().update('cluster', next), 'cluster', idOf(next)) };
  }

  private cluster(): ObjectsByKind['cluster'] {
    const c = this.view.list('cluster')[0];
    if (c === undefined)
      throw new MeshError('FAILED_PRECONDITION', 'the cluster is not initialized; run `meshctl init`');
    return c;
  }

  async listNodes(req: api.ListNodesRequest): Promise<api.ListNodesResponse> {
    await this.read(req.read);
    return { nodes: this.view.list('node') };
  }

  async getNode(req: api.GetNodeRequest): Promise<api.GetNodeResponse> {
    await this.read(req.read);
    return { node: resolveRef(this.view, 'node', req.node, 'node') };
  }

  async updateNode(req: api.UpdateNodeRequest): Promise<api.UpdateNodeResponse> {
    if (req.availability !== undefined) checkAvailability(req.availability);
    if (req.role !== undefined) checkRole(req.role);
    checkLabels(req.labelsAdd, 'labels_add');
    await this.barrier();
    const current = resolveRef(this.view, 'node', req.node, 'node');
    if (req.role === NodeRole.NODE_ROLE_WORKER && current.role === NodeRole.NODE_ROLE_MANAGER)
      this.checkDemote(current);
    const next = this.withVersion(current, req.version);
    if (req.availability !== undefined) next.availability = req.availability;
    if (req.role !== undefined) next.role = req.role;
    for (const key of req.labelsRemove) {
      if (!(key in next.labels))
        throw new ValidationError(
          'labels_remove',
          `node "${current.hostname}" has no label "${key}" to remove`,
        );
      delete next.labels[key];
    }
    Object.assign(next.labels, req.labelsAdd);
    checkLabels(next.labels, 'labels');
    return { node: await this.commit(this.tx().update('node', next), 'node', idOf(next)) };
  }

  /** Demoting must leave at least one manager and a quorum of the rest reachable (swarm's rule). */
  private checkDemote(node: ObjectsByKind['node']): void {
    const rest = this.view
      .list('node')
      .filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER && idOf(n) !== idOf(node));
    if (rest.length === 0)
      throw new MeshError(
        'FAILED_PRECONDITION',
        `node "${node.hostname}" is the last manager; promote another node first (\`meshctl node promote NODE\`)`,
      );
    const ready = rest.filter((n) => n.state === NodeState.NODE_STATE_READY).length;
    const quorum = Math.floor(rest.length / 2) + 1;
    if (ready < quorum)
      throw new MeshError(
        'FAILED_PRECONDITION',
        `demoting node "${node.hostname}" would leave ${ready} of ${rest.length} managers ready, below the quorum of ${quorum}; bring managers back first`,
      );
  }

  async deleteNode(req: api.DeleteNodeRequest): Promise<api.DeleteNodeResponse> {
    await this.barrier();
    const node = resolveRef(this.view, 'node', req.node, 'node');
    if (node.role === NodeRole.NODE_ROLE_MANAGER)
      throw new MeshError(
        'FAILED_PRECONDITION',
        `node "${node.hostname}" is a manager; demote it first (\`meshctl node demote ${node.hostname}\`)`,
      );
    if (node.state !== NodeState.NODE_STATE_DOWN && !req.force)
      throw new MeshError(
        'FAILED_PRECONDITION',
        `node "${node.hostname}" is not down; stop its meshd or drain it, or remove it anyway with --force`,
      );
    const tx = this.tx().delete('node', node);
    // Its certificate goes on the CA's denylist in the same transaction: no caller
    // can remove a node that the managers would still let in.
    const certificate = this.view.get('certificate', idOf(node));
    if (certificate !== undefined && !certificate.removed)
      tx.update('certificate', { ...certificate, removed: true });
    await this.propose(tx);
    return {};
  }

  async createService(req: api.CreateServiceRequest): Promise<api.CreateServiceResponse> {
    if (req.spec === undefined) throw new ValidationError('spec', 'spec is required');
    const input = ServiceSpec.fromPartial(req.spec);
    validateServiceSpec(input);
    await this.barrier();
    if (this.view.find('service', 'name', input.name).length > 0)
      throw new MeshError(
        'ALREADY_EXISTS',
        `service "${input.name}" already exists; use \`meshctl service update\` or pick another name`,
      );
    const id = this.newId();
    const spec = this.resolvedSpec(input, id);
    return { service: await this.commit(this.tx().create('service', newService(id, spec)), 'service', id) };
  }

  /** Network names become IDs (the store's form); ports are checked against other services. */
  private resolvedSpec(spec: ServiceSpec, serviceId: string): ServiceSpec {
    const out = structuredClone(spec);
    out.networks = spec.networks.map((ref, i) =>
      idOf(resolveRef(this.view, 'network', ref, `networks[${i}]`)),
    );
    if (new Set(out.networks).size !== out.networks.length)
      throw new ValidationError('networks', `service "${spec.name}": networks lists one network twice`);
    checkPublishedPorts(this.view, out, serviceId);
    checkRequestedPorts(this.view, out, serviceId);
    return out;
  }

  async listServices(req: api.ListServicesRequest): Promise<api.ListServicesResponse> {
    await this.read(req.read);
    return { services: this.view.list('service') };
  }

  async getService(req: api.GetServiceRequest): Promise<api.GetServiceResponse> {
    await this.read(req.read);
    return { service: resolveRef(this.view, 'service', req.service, 'service') };
  }

  async updateService(req: api.UpdateServiceRequest): Promise<api.UpdateServiceResponse> {
    if (req.spec === undefined)
      throw new ValidationError('spec', 'spec is required (the whole new service spec)');
    const input = ServiceSpec.fromPartial(req.spec);
    validateServiceSpec(input);
    await this.barrier();
    const current = resolveRef(this.view, 'service', req.service, 'service');
    const id = idOf(current);
    if (input.name !== current.spec?.name)
      throw new ValidationError(
        'spec.name',
        `service "${current.spec?.name}" cannot be renamed to "${input.name}"; create a new service instead`,
      );
    const spec = this.resolvedSpec(input, id);
    const base = this.withVersion(current, req.version);
    const sameApartFromReplicas = encodeSpec({ ...spec, replicas: current.spec?.replicas ?? 0 });
    let next: ObjectsByKind['service'];
    // Scaling is not a rollout (swarm: `service scale` restarts nothing).
    if (sameApartFromReplicas === encodeSpec(current.spec)) next = scaleService(base, spec.replicas);
    else next = updateService(base, spec, this.clock.nowMs());
    return { service: await this.commit(this.tx().update('service', next), 'service', id) };
  }

  async rollbackService(req: api.RollbackServiceRequest): Promise<api.RollbackServiceResponse> {
    await this.barrier();
    const current = resolveRef(this.view, 'service', req.service, 'service');
    const next = rollbackService(this.withVersion(current, req.version), this.clock.nowMs());
    return { service: await this.commit(this.tx().update('service', next), 'service', idOf(current)) };
  }

  async deleteService(req: api.DeleteServiceRequest): Promise<api.DeleteServiceResponse> {
    await this.barrier();
    const service = resolveRef(this.view, 'service', req.service, 'service');
    // The reaper retires its tasks (REMOVE → gone) once the service is gone.
    await this.propose(this.tx().delete('service', service));
    return {};
  }

  async listTasks(req: api.ListTasksRequest): Promise<api.ListTasksResponse> {
    await this.read(req.read);
    const service = resolveOptional(this.view, 'service', req.service, 'service');
    const node = resolveOptional(this.view, 'node', req.node, 'node');
    let tasks =
      service !== undefined
        ? this.view.find('task', 'service', idOf(service))
        : node !== undefined
          ? this.view.find('task', 'node', idOf(node))
          : this.view.list('task');
    if (node !== undefined) tasks = tasks.filter((t) => t.nodeId === idOf(node));
    if (!req.all) tasks = tasks.filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING);
    return { tasks };
  }

  async createNetwork(req: api.CreateNetworkRequest): Promise<api.CreateNetworkResponse> {
    checkNetworkName(req.name);
    checkSubnet(req.subnet);
    checkLabels(req.labels, 'labels');
    checkLabels(req.options, 'options');
    await this.barrier();
    if (this.view.find('network', 'name', req.name).length > 0)
      throw new MeshError('ALREADY_EXISTS', `network "${req.name}" already exists; pick another name`);
    const id = this.newId();
    const network = NetworkObject.fromPartial({
      meta: { id },
      name: req.name,
      driver: 'overlay',
      requestedSubnet: req.subnet,
      options: req.options,
      labels: req.labels,
    });
    return { network: await this.commit(this.tx().create('network', network), 'network', id) };
  }

  async listNetworks(req: api.ListNetworksRequest): Promise<api.ListNetworksResponse> {
    await this.read(req.read);
    return { networks: this.view.list('network') };
  }

  async getNetwork(req: api.GetNetworkRequest): Promise<api.GetNetworkResponse> {
    await this.read(req.read);
    return { network: resolveRef(this.view, 'network', req.network, 'network') };
  }

  async deleteNetwork(req: api.DeleteNetworkRequest): Promise<api.DeleteNetworkResponse> {
    await this.barrier();
    const network = resolveRef(this.view, 'network', req.network, 'network');
    if (network.ingress)
      throw new MeshError(
        'FAILED_PRECONDITION',
        `network "${network.name}" is the ingress network; it cannot be removed`,
      );
    const users = this.view
      .list('service')
      .filter((s) => s.spec?.networks.includes(idOf(network)))
      .map((s) => s.spec?.name);
    if (users.length > 0)
      throw new MeshError(
        'FAILED_PRECONDITION',
        `network "${network.name}" is in use by service(s) ${users.join(', ')}; remove them or their attachment first`,
      );
    await this.propose(this.tx().delete('network', network));
    return {};
  }
}

function encodeSpec(spec: ServiceSpec | undefined): string {
  return Buffer.from(ServiceSpec.encode(spec ?? ServiceSpec.fromPartial({})).finish()).toString('base64');
}
