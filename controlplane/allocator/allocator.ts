import { EndpointMode, type PortConfig, type ServiceVip } from '../../src/api/gen/meshd/v1/dataplane.js';
import {
  type NetworkAttachment,
  type NetworkObject,
  type Node,
  type ServiceObject,
  type Task,
  TaskState,
} from '../../src/api/gen/meshd/v1/objects.js';
import { errorMessage } from '../../src/common/errors.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';
import {
  type AllocatorConfig,
  allocatorConfigFrom,
  FIRST_VNI,
  isClusterWidePort,
  LAST_VNI,
  normalizedPort,
  portLabel,
} from './config.js';
import {
  AddressSpace,
  contains,
  formatIpv4,
  formatPrefix,
  macForIpv4,
  overlaps,
  type Prefix,
  parseIpv4,
  parsePrefix,
  sizeOf,
} from './ipv4.js';

/** A task holds its addresses until it has really stopped (observed state terminal), not when asked to stop. */
export function holdsResources(task: Task): boolean {
  return (task.status?.state ?? 0) <= TaskState.TASK_STATE_RUNNING;
}

/** Networks a service's tasks attach to: its own, plus ingress when it publishes through the routing mesh. */
export function serviceNetworkIds(service: ServiceObject, ingressId: string | undefined): string[] {
  const ids = [...(service.spec?.networks ?? [])];
  const meshPort = (service.spec?.endpoint?.ports ?? []).some((p) => isClusterWidePort(normalizedPort(p)));
  if (meshPort && ingressId !== undefined && !ids.includes(ingressId)) ids.push(ingressId);
  return ids;
}

/**
 * Everything in use, rebuilt from the store on each pass, so a release is
 * simply an object (or a live task) that is no longer there: nothing to leak
 * and nothing to replay after a leader change.
 */
class AllocationState {
  readonly subnets: Prefix[] = [];
  readonly vnis = new Set<number>();
  readonly spaces = new Map<string, AddressSpace>();
  /** "port/proto" -> service ID */
  readonly ports = new Map<string, string>();

  constructor(view: StoreView) {
    for (const n of view.list('network')) {
      if (n.vni !== 0) this.vnis.add(n.vni);
      if (n.subnet === '') continue;
      const prefix = parsePrefix(n.subnet, `network ${n.name} subnet`);
      this.subnets.push(prefix);
      const space = new AddressSpace(prefix);
      space.reserve(parseIpv4(n.gateway, `network ${n.name} gateway`));
      this.spaces.set(n.meta!.id, space);
    }
    for (const s of view.list('service')) {
      for (const vip of s.vips) this.reserveAddress(vip.networkId, vip.address);
      for (const p of s.ports)
        if (isClusterWidePort(p)) this.ports.set(portLabel(p.publishedPort, p.protocol), s.meta!.id);
    }
    for (const t of view.list('task')) {
      if (!holdsResources(t)) continue;
      for (const a of t.networks) this.reserveAddress(a.networkId, a.address);
    }
    for (const n of view.list('node'))
      for (const a of n.lbAttachments) this.reserveAddress(a.networkId, a.address);
  }

  reserveAddress(networkId: string, cidr: string): void {
    const ip = cidr.split('/')[0] ?? '';
    if (ip !== '') this.spaces.get(networkId)?.reserve(parseIpv4(ip, 'address'));
  }

  allocateAddress(network: NetworkObject): { address?: string; error?: string } {
    const space = this.spaces.get(network.meta!.id);
    if (space === undefined) return { error: `network ${network.name} has no subnet yet` };
    const ip = space.allocate();
    if (ip === undefined)
      return { error: `no free address in ${formatPrefix(space.prefix)} for network ${network.name}` };
    return { address: `${formatIpv4(ip)}/${space.prefix.length}` };
  }
}

/**
 * One allocator pass: networks get a subnet, gateway and VNI; services get
 * VIPs and published ports; new tasks get an address on each network and
 * move NEW -> PENDING; nodes get a load-balancer address on the networks
 * their tasks use. What cannot be allocated is written on the object
 * (`allocation_message`, the task's status message). Returns undefined when
 * nothing changes.
 */
export function planAllocation(view: StoreView, nowMs: number): TransactionBuilder | undefined {
  const config = allocatorConfigFrom(view);
  const state = new AllocationState(view);
  const tx = new TransactionBuilder(nowMs);
  const networks = new Map<string, NetworkObject>();
  for (const n of byId(view.list('network'))) {
    const next = n.subnet === '' || n.vni === 0 ? allocateNetwork(n, state, config) : n;
    if (next !== n && JSON.stringify(next) !== JSON.stringify(n)) tx.update('network', next);
    networks.set(n.meta!.id, next);
  }
  const ingressId = [...networks.values()].find((n) => n.ingress)?.meta?.id;

  const services = new Map<string, ServiceObject>();
  for (const s of byId(view.list('service'))) {
    const next = allocateService(s, state, config, networks, ingressId);
    if (next !== s) tx.update('service', next);
    services.set(s.meta!.id, next);
  }

  const wanted = [TaskState.TASK_STATE_READY, TaskState.TASK_STATE_RUNNING].flatMap((d) =>
    view.find('task', 'desired', String(d)),
  );
  for (const t of byId(wanted)) {
    if (t.status?.state !== TaskState.TASK_STATE_NEW) continue;
    const next = allocateTask(t, state, networks, services.get(t.serviceId), ingressId);
    if (next !== undefined) tx.update('task', next);
  }

  for (const n of byId(view.list('node'))) {
    const next = allocateNodeLb(n, view, state, networks, ingressId);
    if (next !== undefined) tx.update('node', next);
  }
  return tx.size > 0 ? tx : undefined;
}

function allocateNetwork(n: NetworkObject, state: AllocationState, config: AllocatorConfig): NetworkObject {
  const next = structuredClone(n);
  try {
    if (next.subnet === '') {
      const prefix = next.requestedSubnet !== '' ? requestedSubnet(next, state) : carveSubnet(state, config);
      if (typeof prefix === 'string') {
        next.allocationMessage = prefix;
        return next;
      }
      if (sizeOf(prefix) < 4) {
        next.allocationMessage = `subnet ${formatPrefix(prefix)} of network ${n.name} is too small: a subnet needs room for a gateway and tasks (/30 or larger)`;
        return next;
      }
      state.subnets.push(prefix);
      const space = new AddressSpace(prefix);
      space.reserve(space.gateway);
      state.spaces.set(n.meta!.id, space);
      next.subnet = formatPrefix(prefix);
      next.gateway = formatIpv4(space.gateway);
    }
    if (next.vni === 0) {
      let vni = FIRST_VNI;
      while (state.vnis.has(vni) && vni <= LAST_VNI) vni++;
      if (vni > LAST_VNI) {
        next.allocationMessage = `no free VNI in ${FIRST_VNI}..${LAST_VNI} for network ${n.name}`;
        return next;
      }
      state.vnis.add(vni);
      next.vni = vni;
    }
    next.allocationMessage = '';
  } catch (err) {
    next.allocationMessage = errorMessage(err);
  }
  return next;
}

function requestedSubnet(n: NetworkObject, state: AllocationState): Prefix | string {
  const prefix = parsePrefix(n.requestedSubnet, `network ${n.name} subnet`);
  const clash = state.subnets.find((s) => overlaps(s, prefix));
  if (clash !== undefined)
    return `subnet ${n.requestedSubnet} of network ${n.name} overlaps ${formatPrefix(clash)}, already used by another network`;
  return prefix;
}

function carveSubnet(state: AllocationState, config: AllocatorConfig): Prefix | string {
  for (const poolText of config.defaultAddressPools) {
    const pool = parsePrefix(poolText, 'cluster default_address_pools');
    const length = Math.max(config.subnetSize, pool.length);
    const step = 2 ** (32 - length);
    for (let base = pool.base; contains(pool, base) && base < 2 ** 32; base += step) {
      const candidate = { base, length };
      if (!state.subnets.some((s) => overlaps(s, candidate))) return candidate;
    }
  }
  return `no free /${config.subnetSize} subnet left in the address pools ${config.defaultAddressPools.join(', ')}`;
}

function allocateService(
  s: ServiceObject,
  state: AllocationState,
  config: AllocatorConfig,
  networks: Map<string, NetworkObject>,
  ingressId: string | undefined,
): ServiceObject {
  const problems: string[] = [];
  const id = s.meta!.id;
  const ports: PortConfig[] = [];
  for (const raw of s.spec?.endpoint?.ports ?? []) {
    const p = normalizedPort(raw);
    if (!isClusterWidePort(p)) {
      ports.push(p);
      continue;
    }
    if (p.publishedPort === 0) {
      const had = s.ports.find(
        (q) => q.targetPort === p.targetPort && q.protocol === p.protocol && q.publishMode === p.publishMode,
      );
      p.publishedPort = had?.publishedPort ?? 0;
    }
    if (p.publishedPort === 0) {
      for (let port = config.publishedPortStart; port <= config.publishedPortEnd; port++)
        if (!state.ports.has(portLabel(port, p.protocol))) {
          p.publishedPort = port;
          break;
        }
      if (p.publishedPort === 0) {
        problems.push(`no free published port in ${config.publishedPortStart}-${config.publishedPortEnd}`);
        continue;
      }
    }
    const holder = state.ports.get(portLabel(p.publishedPort, p.protocol));
    if (holder !== undefined && holder !== id) {
      problems.push(
        `published port ${portLabel(p.publishedPort, p.protocol)} is already used by service ${holder}`,
      );
      continue;
    }
    state.ports.set(portLabel(p.publishedPort, p.protocol), id);
    ports.push(p);
  }

  const vips: ServiceVip[] = [];
  if ((s.spec?.endpoint?.mode ?? EndpointMode.ENDPOINT_MODE_VIP) !== EndpointMode.ENDPOINT_MODE_DNSRR) {
    for (const networkId of serviceNetworkIds(s, ingressId)) {
      const had = s.vips.find((v) => v.networkId === networkId);
      if (had !== undefined) {
        vips.push(had);
        continue;
      }
      const network = networks.get(networkId);
      if (network === undefined) {
        problems.push(`network ${networkId} does not exist`);
        continue;
      }
      const got = state.allocateAddress(network);
      if (got.address === undefined) problems.push(got.error!);
      else vips.push({ networkId, address: got.address });
    }
  }
  const message = problems.join('; ');
  const same =
    JSON.stringify([ports, vips, message]) === JSON.stringify([s.ports, s.vips, s.allocationMessage]);
  if (same) return s;
  const next = structuredClone(s);
  next.ports = ports;
  next.vips = vips;
  next.allocationMessage = message;
  return next;
}

function allocateTask(
  t: Task,
  state: AllocationState,
  networks: Map<string, NetworkObject>,
  service: ServiceObject | undefined,
  ingressId: string | undefined,
): Task | undefined {
  const fail = (message: string): Task | undefined => {
    if (t.status?.message === message) return undefined;
    const next = structuredClone(t);
    next.status = { state: TaskState.TASK_STATE_NEW, message, err: '', timestamp: t.status?.timestamp };
    return next;
  };
  if (service === undefined) return fail('waiting for allocation: the service does not exist');
  const attachments: NetworkAttachment[] = [];
  for (const networkId of serviceNetworkIds(service, ingressId)) {
    const network = networks.get(networkId);
    const had = t.networks.find((a) => a.networkId === networkId);
    if (had !== undefined) {
      attachments.push(had);
      continue;
    }
    const got =
      network === undefined
        ? { error: `network ${networkId} does not exist` }
        : state.allocateAddress(network);
    if (got.address === undefined) {
      for (const a of attachments)
        if (!t.networks.includes(a))
          state.spaces.get(a.networkId)?.release(parseIpv4(a.address.split('/')[0]!, 'address'));
      return fail(got.error!);
    }
    const ip = parseIpv4(got.address.split('/')[0]!, 'address');
    attachments.push({ networkId, address: got.address, mac: macForIpv4(ip) });
  }
  const next = structuredClone(t);
  next.networks = attachments;
  next.status = {
    state: TaskState.TASK_STATE_PENDING,
    message: 'pending placement',
    err: '',
    timestamp: t.status?.timestamp,
  };
  return next;
}

function allocateNodeLb(
  n: Node,
  view: StoreView,
  state: AllocationState,
  networks: Map<string, NetworkObject>,
  ingressId: string | undefined,
): Node | undefined {
  const wanted = new Set<string>(ingressId === undefined ? [] : [ingressId]);
  for (const t of view.find('task', 'node', n.meta!.id))
    if (holdsResources(t)) for (const a of t.networks) wanted.add(a.networkId);
  const kept = n.lbAttachments.filter((a) => wanted.has(a.networkId));
  for (const networkId of [...wanted].sort()) {
    if (kept.some((a) => a.networkId === networkId)) continue;
    const network = networks.get(networkId);
    if (network === undefined) continue;
    const got = state.allocateAddress(network);
    if (got.address === undefined) continue;
    kept.push({
      networkId,
      address: got.address,
      mac: macForIpv4(parseIpv4(got.address.split('/')[0]!, 'address')),
    });
  }
  if (JSON.stringify(kept) === JSON.stringify(n.lbAttachments)) return undefined;
  const next = structuredClone(n);
  next.lbAttachments = kept;
  return next;
}

function byId<T extends { meta?: { id: string } | undefined }>(rows: T[]): T[] {
  return [...rows].sort((a, b) => ((a.meta?.id ?? '') < (b.meta?.id ?? '') ? -1 : 1));
}
