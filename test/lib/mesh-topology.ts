/**
 * The data-plane acceptance topology of issue 6, shared by every lab that runs
 * it (the namespace lab with nftables, the VM lab with IPVS): 3 hosts,
 * networks `app` and `ingress`, tasks t1 (host 1) and t2 (host 2) running
 * test/integration/dataplane/fixtures/task-server.mjs, a client sandbox c3 on
 * host 3, service `web` (VIP, published 30080 ingress) and service `loc`
 * (t1 only, published 30090 mode=local, health port 30091).
 * `meshDesiredState` is the DesiredState one host must program (pure).
 */
import { macFromIpv4 } from '../../dataplane/overlay/names.js';
import {
  type DesiredState,
  EndpointMode,
  EndpointState,
  type Network,
  Protocol,
  PublishMode,
} from '../../src/api/gen/meshd/v1/dataplane.js';

export const TASK_PORT = 8080;
export const WEB_VIP = '10.10.0.100';
export const WEB_PUBLISHED = 30080;
export const LOCAL_PUBLISHED = 30090;
export const LOCAL_HEALTH = 30091;

export interface MeshNetworkSpec {
  id: string;
  vni: number;
  prefix: string;
  ingress: boolean;
}

export const MESH_NETWORKS: readonly MeshNetworkSpec[] = [
  { id: 'app', vni: 4097, prefix: '10.10.0', ingress: false },
  { id: 'ingress', vni: 4096, prefix: '10.255.0', ingress: true },
];

export interface MeshTaskSpec {
  id: string;
  /** Index (1-based) of the host the task runs on. */
  host: number;
  /** Last octet of its address on every network. */
  octet: number;
  /** null for the client sandbox. */
  service: 'web' | null;
  networks: readonly string[];
}

export const MESH_TASKS: readonly MeshTaskSpec[] = [
  { id: 't1', host: 1, octet: 11, service: 'web', networks: ['app', 'ingress'] },
  { id: 't2', host: 2, octet: 12, service: 'web', networks: ['app', 'ingress'] },
  { id: 'c3', host: 3, octet: 23, service: null, networks: ['app'] },
];

/** A host of the topology: its 1-based index and underlay address. */
export interface MeshHost {
  index: number;
  address: string;
}

/** This host's LB address on a network (the SNAT source of its balanced connections). */
export function meshLbAddress(networkId: string, host: number): string {
  const spec = MESH_NETWORKS.find((n) => n.id === networkId);
  if (spec === undefined) throw new Error(`no network "${networkId}" in the mesh topology`);
  return `${spec.prefix}.${250 + host}`;
}

/** A task's address on a network. */
export function meshTaskAddress(taskId: string, networkId: string): string {
  const task = MESH_TASKS.find((t) => t.id === taskId);
  const spec = MESH_NETWORKS.find((n) => n.id === networkId);
  if (task === undefined || spec === undefined) throw new Error(`no task ${taskId} on ${networkId}`);
  return `${spec.prefix}.${task.octet}`;
}

export interface MeshStateInput {
  hosts: readonly MeshHost[];
  /** The host whose state this is. */
  index: number;
  /** task id -> state of service `web`'s endpoint on every network; missing = removed. */
  web: ReadonlyMap<string, EndpointState>;
  /** More ports of service `web` (target -> published, ingress mode), e.g. iperf3 for the bench. */
  extraWebPorts?: readonly { targetPort: number; publishedPort: number }[];
}

/** The desired state of host `index` given the current endpoint states (pure). */
export function meshDesiredState(input: MeshStateInput): DesiredState {
  const host = input.hosts.find((h) => h.index === input.index);
  if (host === undefined) throw new Error(`no host ${input.index} in the mesh topology`);
  const nodeId = (i: number) => `n${i}`;
  const networks: Network[] = MESH_NETWORKS.map((spec) => ({
    id: spec.id,
    name: spec.id,
    vni: spec.vni,
    subnet: `${spec.prefix}.0/24`,
    gateway: `${spec.prefix}.1`,
    mtu: 1450,
    lbAddress: meshLbAddress(spec.id, input.index),
    peers: input.hosts
      .filter((h) => h !== host)
      .map((h) => ({ nodeId: nodeId(h.index), underlayAddress: h.address })),
    ingress: spec.ingress,
  }));
  const attachments = (task: MeshTaskSpec) =>
    task.networks.map((networkId) => {
      const address = meshTaskAddress(task.id, networkId);
      return { networkId, address, mac: macFromIpv4(address) };
    });
  const remoteEndpoints = [];
  for (const other of input.hosts) {
    if (other === host) continue;
    for (const spec of MESH_NETWORKS) {
      const address = meshLbAddress(spec.id, other.index);
      remoteEndpoints.push({
        networkId: spec.id,
        address,
        mac: macFromIpv4(address),
        vtep: other.address,
        taskId: `lb-h${other.index}`,
      });
    }
    for (const task of MESH_TASKS.filter((t) => t.host === other.index))
      for (const a of attachments(task)) remoteEndpoints.push({ ...a, vtep: other.address, taskId: task.id });
  }
  const webEndpoints = [];
  for (const task of MESH_TASKS)
    for (const a of attachments(task)) {
      const state = task.service === 'web' ? input.web.get(task.id) : undefined;
      if (state !== undefined)
        webEndpoints.push({
          taskId: task.id,
          taskName: task.id,
          nodeId: nodeId(task.host),
          networkId: a.networkId,
          address: a.address,
          state,
        });
    }
  const port = (
    publishedPort: number,
    publishMode: PublishMode,
    healthPort: number,
    targetPort = TASK_PORT,
  ) => ({
    name: targetPort === TASK_PORT ? 'http' : `p${targetPort}`,
    protocol: Protocol.PROTOCOL_TCP,
    targetPort,
    publishedPort,
    publishMode,
    healthPort,
  });
  return {
    version: 1,
    node: { id: nodeId(input.index), underlayAddress: host.address, dataPathPort: 0, underlayMtu: 1500 },
    networks,
    sandboxes: MESH_TASKS.filter((t) => t.host === input.index).map((t) => ({
      taskId: t.id,
      taskName: t.id,
      serviceId: t.service ?? '',
      attachments: attachments(t),
    })),
    remoteEndpoints,
    services: [
      {
        id: 'web',
        name: 'web',
        vips: [{ networkId: 'app', address: WEB_VIP }],
        ports: [
          port(WEB_PUBLISHED, PublishMode.PUBLISH_MODE_INGRESS, 0),
          ...(input.extraWebPorts ?? []).map((p) =>
            port(p.publishedPort, PublishMode.PUBLISH_MODE_INGRESS, 0, p.targetPort),
          ),
        ],
        endpoints: webEndpoints,
        endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
        lb: undefined,
      },
      {
        id: 'loc',
        name: 'loc',
        vips: [],
        ports: [port(LOCAL_PUBLISHED, PublishMode.PUBLISH_MODE_LOCAL, LOCAL_HEALTH)],
        endpoints: webEndpoints
          .filter((e) => e.taskId === 't1' && e.networkId === 'ingress')
          .map((e) => ({ ...e, state: EndpointState.ENDPOINT_STATE_ACTIVE })),
        endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
        lb: undefined,
      },
    ],
    dns: undefined,
  };
}
