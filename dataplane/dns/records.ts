/**
 * The cluster's DNS records, derived from one DesiredState (pure). Records are
 * grouped by network: a sandbox sees the union of the networks it is attached
 * to, looked up in its attachment order, so a task only ever learns about
 * services that share a network with it (swarm's scoping rule).
 */
import {
  type DesiredState,
  type Endpoint,
  EndpointMode,
  EndpointState,
  Protocol,
  type Service,
} from '../../src/api/gen/meshd/v1/dataplane.js';

export const DEFAULT_VIP_TTL_S = 10;
export const DEFAULT_TASK_TTL_S = 2;

export interface SrvTarget {
  /** Host name the SRV record points at (no trailing dot). */
  target: string;
  port: number;
  /** The A record for `target`, sent in the additional section. */
  address: string;
}

/** What one name resolves to inside one network. */
export type NameRecords =
  | { kind: 'addresses'; addresses: readonly string[]; ttlS: number; shuffle: boolean }
  | { kind: 'srv'; targets: readonly SrvTarget[]; ttlS: number; shuffle: boolean };

export interface NetworkRecords {
  networkId: string;
  /** Lower-case name → records. */
  names: Map<string, NameRecords>;
  /** Reverse name (`4.3.2.1.in-addr.arpa`) → host name. */
  pointers: Map<string, string>;
}

export interface Subnet {
  base: number;
  maskBits: number;
}

export interface DnsIndex {
  version: number;
  networks: Map<string, NetworkRecords>;
  /** Every name of every network: a name here is never forwarded, in or out of scope. */
  clusterNames: Set<string>;
  /** Every reverse name of every network, for the same reason. */
  clusterPointers: Set<string>;
  /** Cluster subnets: reverse lookups inside them are answered here, never forwarded. */
  subnets: Subnet[];
  /** Sandbox task ID → its network IDs, in attachment order. */
  sandboxScopes: Map<string, readonly string[]>;
  vipTtlS: number;
  taskTtlS: number;
  /** Records that were left out, with why (bad address or name), for a log line. */
  skipped: string[];
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** True when `name` is a dotted sequence of hostname labels (lower case) within 253 characters. */
export function isValidHostname(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split('.').every((label) => LABEL.test(label));
}

export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    value = value * 256 + n;
  }
  return value;
}

export function reverseName(address: string): string {
  return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
}

/** The IPv4 address a reverse name stands for, or undefined when it is not one. */
export function addressOfReverseName(nameLower: string): number | undefined {
  const suffix = '.in-addr.arpa';
  if (!nameLower.endsWith(suffix)) return undefined;
  const labels = nameLower.slice(0, -suffix.length).split('.');
  if (labels.length !== 4) return undefined;
  return parseIpv4(labels.reverse().join('.'));
}

function parseSubnet(cidr: string): Subnet | undefined {
  const [addr, bits] = cidr.split('/');
  const base = parseIpv4(addr ?? '');
  const maskBits = Number(bits);
  if (base === undefined || !Number.isInteger(maskBits) || maskBits < 0 || maskBits > 32) return undefined;
  return { base, maskBits };
}

export function inSubnet(address: number, subnet: Subnet): boolean {
  if (subnet.maskBits === 0) return true;
  const shift = 32 - subnet.maskBits;
  return Math.floor(address / 2 ** shift) === Math.floor(subnet.base / 2 ** shift);
}

function protocolLabel(protocol: Protocol): string | undefined {
  if (protocol === Protocol.PROTOCOL_TCP) return '_tcp';
  if (protocol === Protocol.PROTOCOL_UDP) return '_udp';
  return undefined;
}

/** Builds the per-network records of one DesiredState. Never throws on bad data: skips and says why. */
export function buildIndex(state: DesiredState): DnsIndex {
  const vipTtlS = state.dns?.vipTtlS || DEFAULT_VIP_TTL_S;
  const taskTtlS = state.dns?.taskTtlS || DEFAULT_TASK_TTL_S;
  const index: DnsIndex = {
    version: state.version,
    networks: new Map(),
    clusterNames: new Set(),
    clusterPointers: new Set(),
    subnets: [],
    sandboxScopes: new Map(),
    vipTtlS,
    taskTtlS,
    skipped: [],
  };
  const networkNames = new Map<string, string>();
  for (const n of state.networks) {
    networkNames.set(n.id, n.name.toLowerCase());
    const subnet = parseSubnet(n.subnet);
    if (subnet !== undefined) index.subnets.push(subnet);
  }
  for (const sb of state.sandboxes) {
    index.sandboxScopes.set(
      sb.taskId,
      sb.attachments.map((a) => a.networkId),
    );
  }
  const networkRecords = (networkId: string): NetworkRecords => {
    let records = index.networks.get(networkId);
    if (records === undefined) {
      records = { networkId, names: new Map(), pointers: new Map() };
      index.networks.set(networkId, records);
    }
    return records;
  };
  const addName = (networkId: string, name: string, records: NameRecords): void => {
    if (!isValidHostname(name)) {
      index.skipped.push(`name "${name}" is not a valid host name`);
      return;
    }
    const scope = networkRecords(networkId);
    // First writer wins: a service name beats a task name that happens to be equal.
    if (!scope.names.has(name)) scope.names.set(name, records);
    index.clusterNames.add(name);
  };
  const addPointer = (networkId: string, address: string, target: string): void => {
    if (!isValidHostname(target)) return;
    const reverse = reverseName(address);
    const scope = networkRecords(networkId);
    if (!scope.pointers.has(reverse)) scope.pointers.set(reverse, target);
    index.clusterPointers.add(reverse);
  };

  for (const service of state.services) addService(service);
  // A local task that is no service's active endpoint (starting, unhealthy, a plain
  // client) still owns its name: never forwarded, but no address either.
  for (const sb of state.sandboxes) {
    const taskName = sb.taskName.toLowerCase();
    if (taskName === '') continue;
    for (const a of sb.attachments) {
      if (index.networks.get(a.networkId)?.names.has(taskName) === true) continue;
      addName(a.networkId, taskName, { kind: 'addresses', addresses: [], ttlS: taskTtlS, shuffle: false });
    }
  }

  function addService(service: Service): void {
    const serviceName = service.name.toLowerCase();
    const dnsrr = service.endpointMode === EndpointMode.ENDPOINT_MODE_DNSRR;
    const networkIds = new Set<string>([
      ...service.vips.map((v) => v.networkId),
      ...service.endpoints.map((e) => e.networkId),
    ]);
    for (const networkId of networkIds) {
      const endpoints = service.endpoints.filter((e) => e.networkId === networkId);
      const active = endpoints
        .filter((e) => e.state === EndpointState.ENDPOINT_STATE_ACTIVE && validAddress(e.address, e))
        .sort((a, b) => (parseIpv4(a.address) ?? 0) - (parseIpv4(b.address) ?? 0));
      const activeAddresses = active.map((e) => e.address);
      const vip = service.vips.find((v) => v.networkId === networkId && parseIpv4(v.address) !== undefined);
      let serviceRecords: NameRecords;
      if (dnsrr) {
        serviceRecords = { kind: 'addresses', addresses: activeAddresses, ttlS: taskTtlS, shuffle: true };
      } else {
        // VIP mode without a VIP on this network: the name exists but has no address (NODATA).
        const addresses = vip === undefined ? [] : [vip.address];
        serviceRecords = { kind: 'addresses', addresses, ttlS: vipTtlS, shuffle: false };
        if (vip !== undefined) addPointer(networkId, vip.address, serviceName);
      }
      addName(networkId, serviceName, serviceRecords);
      const networkName = networkNames.get(networkId);
      if (networkName !== undefined && networkName !== '')
        addName(networkId, `${serviceName}.${networkName}`, serviceRecords);
      addName(networkId, `tasks.${serviceName}`, {
        kind: 'addresses',
        addresses: activeAddresses,
        ttlS: taskTtlS,
        shuffle: false,
      });
      for (const port of service.ports) {
        const proto = protocolLabel(port.protocol);
        if (port.name === '' || proto === undefined) continue;
        const targets: SrvTarget[] = dnsrr
          ? active
              .filter((e) => isValidHostname(e.taskName.toLowerCase()))
              .map((e) => ({ target: e.taskName.toLowerCase(), port: port.targetPort, address: e.address }))
          : vip === undefined
            ? []
            : [{ target: serviceName, port: port.targetPort, address: vip.address }];
        addName(networkId, `_${port.name.toLowerCase()}.${proto}.${serviceName}`, {
          kind: 'srv',
          targets,
          ttlS: dnsrr ? taskTtlS : vipTtlS,
          shuffle: dnsrr,
        });
      }
      for (const e of endpoints) {
        const taskName = e.taskName.toLowerCase();
        if (taskName === '') continue;
        const isActive = active.includes(e);
        // A draining task's name stays a cluster name (never forwarded), with no address.
        addName(networkId, taskName, {
          kind: 'addresses',
          addresses: isActive ? [e.address] : [],
          ttlS: taskTtlS,
          shuffle: false,
        });
        if (isActive) addPointer(networkId, e.address, taskName);
      }
    }
  }

  function validAddress(address: string, e: Endpoint): boolean {
    if (parseIpv4(address) !== undefined) return true;
    index.skipped.push(`endpoint of task "${e.taskId}": address "${address}" is not IPv4`);
    return false;
  }

  return index;
}

/** An index with no records: every name is forwarded until the first state arrives. */
export function emptyIndex(): DnsIndex {
  return {
    version: 0,
    networks: new Map(),
    clusterNames: new Set(),
    clusterPointers: new Set(),
    subnets: [],
    sandboxScopes: new Map(),
    vipTtlS: DEFAULT_VIP_TTL_S,
    taskTtlS: DEFAULT_TASK_TTL_S,
    skipped: [],
  };
}
