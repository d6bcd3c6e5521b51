import { bootstrapCluster } from '../../../controlplane/allocator/config.js';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { PortConfig } from '../../../src/api/gen/meshd/v1/dataplane.js';
import {
  type ClusterSpec,
  NetworkObject,
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  ServiceMode,
  ServiceObject,
  type ServiceSpec,
  Task,
  TaskState,
} from '../../../src/api/gen/meshd/v1/objects.js';

export function newStore(spec: Partial<ClusterSpec> = {}, ingressSubnet?: string): MemoryStore {
  const store = new MemoryStore();
  store.apply(
    bootstrapCluster({
      nowMs: 0,
      clusterId: 'cluster',
      ingressNetworkId: 'ingress',
      spec,
      ...(ingressSubnet ? { ingressSubnet } : {}),
    }).build(),
  );
  return store;
}

export function network(id: string, name: string, requestedSubnet = ''): NetworkObject {
  return NetworkObject.fromPartial({ meta: { id }, name, driver: 'overlay', requestedSubnet });
}

export function service(id: string, spec: Partial<ServiceSpec>): ServiceObject {
  return ServiceObject.fromPartial({
    meta: { id },
    specVersion: 1,
    spec: { name: id, mode: ServiceMode.SERVICE_MODE_REPLICATED, replicas: 1, ...spec } as ServiceSpec,
  });
}

export function port(target: number, published = 0, extra: Partial<PortConfig> = {}): PortConfig {
  return PortConfig.fromPartial({ targetPort: target, publishedPort: published, ...extra });
}

export function newTask(id: string, serviceId: string, slot: number, nodeId = ''): Task {
  return Task.fromPartial({
    meta: { id },
    serviceId,
    slot,
    nodeId,
    specVersion: 1,
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state: TaskState.TASK_STATE_NEW },
  });
}

export function node(id: string, extra: Partial<Node> = {}): Node {
  return Node.fromPartial({
    meta: { id },
    hostname: id,
    role: NodeRole.NODE_ROLE_WORKER,
    availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
    state: NodeState.NODE_STATE_READY,
    resources: { nanoCpus: 4e9, memoryBytes: 8 * 2 ** 30 },
    ...extra,
  } as Node);
}

export function create(
  store: MemoryStore,
  ...objects: (['network', NetworkObject] | ['service', ServiceObject] | ['task', Task] | ['node', Node])[]
): void {
  const tx = new TransactionBuilder(0);
  for (const [kind, obj] of objects) tx.create(kind as 'task', obj as Task);
  store.apply(tx.build());
}
