import {
  type DesiredState,
  type Endpoint,
  EndpointMode,
  EndpointState,
  type Network,
  type RemoteEndpoint,
  type Sandbox,
  type Service,
} from '../../src/api/gen/meshd/v1/dataplane.js';
import {
  type Cluster,
  type NetworkObject,
  type Node,
  NodeState,
  type ServiceObject,
  type Task,
  TaskState,
} from '../../src/api/gen/meshd/v1/objects.js';

/**
 * What one node must program, derived from the cluster's objects: the pure
 * heart of the dispatcher. The same objects give the same DesiredState on every
 * manager (everything sorted by key), so a failover sends the node nothing new.
 *
 * Rules (swarm's, plus draining):
 * - a task has a sandbox on its node from ASSIGNED until it reaches a terminal
 *   state (COMPLETE and after): the agent needs it to start, and the process
 *   keeps it while it drains;
 * - a task is an `active` endpoint when it is observed RUNNING and still desired
 *   RUNNING; `draining` when observed RUNNING but desired to stop; otherwise it
 *   is no endpoint at all (starting tasks get no traffic, nor tasks of a DOWN node);
 * - a node takes part in the networks its sandboxes attach to, and always in the
 *   ingress network (every node answers published ports);
 * - every other node's tasks on those networks are remote endpoints reached over
 *   VXLAN at that node's first address.
 */
export interface ClusterView {
  nodes: readonly Node[];
  services: readonly ServiceObject[];
  tasks: readonly Task[];
  networks: readonly NetworkObject[];
  cluster?: Cluster | undefined;
  /** The node's load-balancer address on a network (allocated by IPAM). */
  lbAddress(nodeId: string, networkId: string): string | undefined;
}

export function desiredStateForNode(view: ClusterView, nodeId: string, version: number): DesiredState {
  const nodesById = new Map(view.nodes.map((n) => [n.meta?.id ?? '', n]));
  const self = nodesById.get(nodeId);
  const servicesById = new Map(view.services.map((s) => [s.meta?.id ?? '', s]));
  const live = view.tasks.filter(hasSandboxState);
  const mine = live.filter((t) => t.nodeId === nodeId);

  const myNetworkIds = new Set<string>();
  for (const t of mine) for (const a of t.networks) myNetworkIds.add(a.networkId);
  for (const n of view.networks) if (n.ingress && n.vni !== 0) myNetworkIds.add(n.meta?.id ?? '');

  const networks: Network[] = view.networks
    .filter((n) => myNetworkIds.has(n.meta?.id ?? '') && n.subnet !== '')
    .map((n) => networkFor(n, nodeId, view, live, nodesById));

  const sandboxes: Sandbox[] = mine.map((t) => ({
    taskId: t.meta?.id ?? '',
    taskName: taskName(t, servicesById.get(t.serviceId)),
    serviceId: t.serviceId,
    attachments: t.networks
      .filter((a) => myNetworkIds.has(a.networkId))
      .map((a) => ({
        networkId: a.networkId,
        address: hostAddress(a.address),
        mac: macFor(a.mac, a.address),
      })),
  }));

  const remoteEndpoints: RemoteEndpoint[] = [];
  for (const t of live) {
    if (t.nodeId === nodeId) continue;
    const vtep = nodesById.get(t.nodeId)?.addresses[0];
    if (vtep === undefined || vtep === '') continue;
    for (const a of t.networks) {
      if (!myNetworkIds.has(a.networkId) || a.address === '') continue;
      remoteEndpoints.push({
        networkId: a.networkId,
        address: hostAddress(a.address),
        mac: macFor(a.mac, a.address),
        vtep,
        taskId: t.meta?.id ?? '',
      });
    }
  }

  // Other nodes' load-balancer addresses: balanced connections leave a node
  // SNATed to its LB address, so a task's reply to that address must cross the
  // overlay back to it, which needs a static FDB + neighbour entry everywhere.
  for (const n of view.nodes) {
    const otherId = n.meta?.id ?? '';
    const vtep = n.addresses[0];
    if (otherId === nodeId || vtep === undefined || vtep === '') continue;
    for (const a of n.lbAttachments) {
      if (!myNetworkIds.has(a.networkId) || a.address === '') continue;
      remoteEndpoints.push({
        networkId: a.networkId,
        address: hostAddress(a.address),
        mac: macFor(a.mac, a.address),
        vtep,
        taskId: '',
      });
    }
  }

  const services: Service[] = [];
  for (const s of view.services) {
    const serviceId = s.meta?.id ?? '';
    // The allocator stores VIPs as CIDRs ("10.0.1.2/24"); the data plane takes addresses.
    const vips = s.vips
      .filter((v) => myNetworkIds.has(v.networkId))
      .map((v) => ({ networkId: v.networkId, address: hostAddress(v.address) }));
    const endpoints: Endpoint[] = [];
    for (const t of live) {
      if (t.serviceId !== serviceId) continue;
      // A DOWN node's tasks keep their last observed state (RUNNING) until the
      // reaper orphans them, hours later; nothing answers there, so they are
      // no endpoint anywhere from the moment the node is declared down.
      if (nodesById.get(t.nodeId)?.state === NodeState.NODE_STATE_DOWN) continue;
      const state = endpointState(t);
      if (state === undefined) continue;
      for (const a of t.networks) {
        if (!myNetworkIds.has(a.networkId) || a.address === '') continue;
        endpoints.push({
          taskId: t.meta?.id ?? '',
          taskName: taskName(t, s),
          nodeId: t.nodeId,
          networkId: a.networkId,
          address: hostAddress(a.address),
          state,
        });
      }
    }
    if (vips.length === 0 && endpoints.length === 0) continue;
    services.push({
      id: serviceId,
      name: s.spec?.name ?? '',
      vips: sortBy(vips, (v) => v.networkId),
      ports: s.ports.length > 0 ? s.ports : (s.spec?.endpoint?.ports ?? []),
      endpoints: sortBy(endpoints, (e) => `${e.networkId}/${e.taskId}`),
      endpointMode: s.spec?.endpoint?.mode || EndpointMode.ENDPOINT_MODE_VIP,
      lb: undefined,
    });
  }

  return {
    version,
    node: {
      id: nodeId,
      underlayAddress: self?.addresses[0] ?? '',
      dataPathPort: 0,
      underlayMtu: 0,
    },
    networks: sortBy(networks, (n) => n.id),
    sandboxes: sortBy(sandboxes, (s) => s.taskId),
    remoteEndpoints: sortBy(remoteEndpoints, (r) => `${r.networkId}/${r.address}`),
    services: sortBy(services, (s) => s.id),
    dns: undefined,
  };
}

function networkFor(
  n: NetworkObject,
  nodeId: string,
  view: ClusterView,
  live: readonly Task[],
  nodesById: Map<string, Node>,
): Network {
  const networkId = n.meta?.id ?? '';
  const peerIds = new Set<string>();
  if (n.ingress) {
    for (const node of view.nodes)
      if (node.state !== NodeState.NODE_STATE_DOWN) peerIds.add(node.meta?.id ?? '');
  } else {
    for (const t of live) if (t.networks.some((a) => a.networkId === networkId)) peerIds.add(t.nodeId);
  }
  peerIds.delete(nodeId);
  const peers = [...peerIds]
    .map((id) => ({ nodeId: id, underlayAddress: nodesById.get(id)?.addresses[0] ?? '' }))
    .filter((p) => p.underlayAddress !== '');
  return {
    id: networkId,
    name: n.name,
    vni: n.vni,
    subnet: n.subnet,
    gateway: n.gateway,
    mtu: 0,
    lbAddress: view.lbAddress(nodeId, networkId) ?? '',
    peers: sortBy(peers, (p) => p.nodeId),
    ingress: n.ingress,
  };
}

function observed(t: Task): TaskState {
  return t.status?.state ?? TaskState.TASK_STATE_NEW;
}

function hasSandboxState(t: Task): boolean {
  const s = observed(t);
  return t.nodeId !== '' && s >= TaskState.TASK_STATE_ASSIGNED && s < TaskState.TASK_STATE_COMPLETE;
}

function endpointState(t: Task): EndpointState | undefined {
  if (observed(t) !== TaskState.TASK_STATE_RUNNING) return undefined;
  return t.desiredState <= TaskState.TASK_STATE_RUNNING
    ? EndpointState.ENDPOINT_STATE_ACTIVE
    : EndpointState.ENDPOINT_STATE_DRAINING;
}

/** Swarm's task name: `<service>.<slot>.<task id>` (global tasks use the node ID for the slot). */
export function taskName(t: Task, s: ServiceObject | undefined): string {
  const slot = t.slot !== 0 ? String(t.slot) : t.nodeId;
  return `${s?.spec?.name ?? t.serviceId}.${slot}.${t.meta?.id ?? ''}`;
}

/** "10.0.0.5/16" → "10.0.0.5". */
export function hostAddress(cidr: string): string {
  const slash = cidr.indexOf('/');
  return slash < 0 ? cidr : cidr.slice(0, slash);
}

/**
 * The allocator's MAC, or one derived from the IPv4 address (02:42 + the four
 * address bytes, as Docker does): every node computes the same MAC for a task,
 * so static FDB and neighbour entries agree cluster-wide.
 */
export function macFor(mac: string, cidr: string): string {
  if (mac !== '') return mac;
  const octets = hostAddress(cidr).split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255))) return '';
  return ['02', '42', ...octets.map((o) => o.toString(16).padStart(2, '0'))].join(':');
}

function sortBy<T>(items: T[], key: (item: T) => string): T[] {
  return items.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}

/** A ClusterView over stored objects: LB addresses come from each node's `lbAttachments`. */
export function clusterViewOf(objects: Omit<ClusterView, 'lbAddress'>): ClusterView {
  const lb = new Map<string, string>();
  for (const n of objects.nodes)
    for (const a of n.lbAttachments) lb.set(`${n.meta?.id ?? ''}/${a.networkId}`, hostAddress(a.address));
  return { ...objects, lbAddress: (nodeId, networkId) => lb.get(`${nodeId}/${networkId}`) };
}
