import type { ClusterView } from '../../../controlplane/dispatcher/assignments.js';
import { EndpointMode, Protocol, PublishMode } from '../../../src/api/gen/meshd/v1/dataplane.js';
import {
  NetworkObject,
  Node,
  NodeState,
  ServiceObject,
  Task,
  type TaskState,
} from '../../../src/api/gen/meshd/v1/objects.js';

/** A small cluster: 3 nodes, an `app` overlay, the ingress network, service `web`. */
export function node(id: string, address: string, state = NodeState.NODE_STATE_READY): Node {
  return Node.fromPartial({
    meta: { id, version: undefined, createdAt: undefined, updatedAt: undefined },
    hostname: id,
    role: 1,
    availability: 1,
    labels: {},
    resources: undefined,
    addresses: [address],
    state,
    statusMessage: '',
    stateChangedAt: undefined,
  });
}

export function network(
  id: string,
  name: string,
  subnet: string,
  vni: number,
  ingress = false,
): NetworkObject {
  return NetworkObject.fromPartial({
    meta: { id, version: undefined, createdAt: undefined, updatedAt: undefined },
    name,
    driver: 'overlay',
    requestedSubnet: '',
    options: {},
    labels: {},
    ingress,
    subnet,
    gateway: subnet.replace(/\.0\/\d+$/, '.1'),
    vni,
    allocationMessage: '',
  });
}

export function service(id: string, name: string, extra: Partial<ServiceObject> = {}): ServiceObject {
  return ServiceObject.fromPartial({
    meta: { id, version: undefined, createdAt: undefined, updatedAt: undefined },
    spec: {
      name,
      labels: {},
      mode: 1,
      replicas: 2,
      task: undefined,
      networks: ['app'],
      endpoint: {
        mode: EndpointMode.ENDPOINT_MODE_VIP,
        ports: [],
      },
      update: undefined,
      rollback: undefined,
    },
    previousSpec: undefined,
    specVersion: 1,
    updateStatus: undefined,
    vips: [
      { networkId: 'app', address: '10.0.1.2' },
      { networkId: 'ingress', address: '10.255.0.2' },
    ],
    ports: [
      {
        name: 'http',
        protocol: Protocol.PROTOCOL_TCP,
        targetPort: 80,
        publishedPort: 30080,
        publishMode: PublishMode.PUBLISH_MODE_INGRESS,
        healthPort: 0,
      },
    ],
    allocationMessage: '',
    ...extra,
  });
}

export function task(
  id: string,
  serviceId: string,
  nodeId: string,
  slot: number,
  observed: TaskState,
  addresses: Record<string, string>,
  desired: TaskState = 8,
): Task {
  return Task.fromPartial({
    meta: { id, version: undefined, createdAt: undefined, updatedAt: undefined },
    serviceId,
    slot,
    nodeId,
    desiredState: desired,
    status: { state: observed, message: '', err: '', timestamp: undefined },
    networks: Object.entries(addresses).map(([networkId, address]) => ({ networkId, address, mac: '' })),
    specVersion: 1,
    spec: undefined,
    hostPorts: [],
    startAfter: undefined,
    createdByUpdate: false,
  });
}

export function cluster(tasks: Task[], services: ServiceObject[] = [service('web', 'web')]): ClusterView {
  return {
    nodes: [node('n1', '192.168.50.1'), node('n2', '192.168.50.2'), node('n3', '192.168.50.3')],
    networks: [
      network('app', 'app', '10.0.1.0/24', 4097),
      network('ingress', 'ingress', '10.255.0.0/16', 4096, true),
    ],
    services,
    tasks,
    lbAddress: (nodeId, networkId) =>
      `${networkId === 'app' ? '10.0.1' : '10.255.0'}.${250 + Number(nodeId.slice(1))}`,
  };
}
