import {
  type DesiredState,
  EndpointMode,
  EndpointState,
  type Network,
  Protocol,
  PublishMode,
} from '../../src/api/gen/meshd/v1/dataplane.js';
import { ValidationError } from '../../src/common/errors.js';
import { cidrContains, cidrsOverlap, type Ipv4Cidr, isMac, parseCidr, parseIpv4 } from './ipv4.js';

/**
 * Validation of a whole DesiredState before anything touches the kernel, so a
 * bad state is rejected as a unit and nothing is half-applied. Every issue
 * names the field path (`networks[1].subnet`), the value, and what is accepted.
 */

export interface ValidationIssue {
  field: string;
  message: string;
}

/** The LB schedulers every backend accepts; IPVS-only names are accepted too and mapped by the backend. */
export const KNOWN_SCHEDULERS = ['', 'rr', 'random', 'sh', 'wrr', 'lc', 'mh'] as const;

const MAX_VNI = 16_777_215;

class Collector {
  readonly issues: ValidationIssue[] = [];
  add(field: string, message: string): void {
    this.issues.push({ field, message: `${field}: ${message}` });
  }
}

function quote(value: string): string {
  return JSON.stringify(value);
}

function checkAddress(c: Collector, field: string, value: string): number | null {
  const parsed = parseIpv4(value);
  if (parsed === null) c.add(field, `must be an IPv4 address like 10.0.0.2, got ${quote(value)}`);
  return parsed;
}

function checkPort(c: Collector, field: string, value: number, allowZero: boolean): void {
  const min = allowZero ? 0 : 1;
  if (!Number.isInteger(value) || value < min || value > 65535)
    c.add(field, `must be an integer ${min}..65535, got ${value}`);
}

interface KnownNetwork {
  network: Network;
  index: number;
  cidr: Ipv4Cidr | null;
}

/** Checks an address belongs to a known network's subnet; returns the network or undefined. */
function checkNetworkAddress(
  c: Collector,
  networks: Map<string, KnownNetwork>,
  field: string,
  networkId: string,
  address: string,
): KnownNetwork | undefined {
  const known = networks.get(networkId);
  if (known === undefined) {
    const ids = [...networks.keys()].map(quote).join(', ') || 'none';
    c.add(`${field}.networkId`, `unknown network ${quote(networkId)}; known networks: ${ids}`);
  }
  const parsed = checkAddress(c, `${field}.address`, address);
  if (known?.cidr && parsed !== null && !cidrContains(known.cidr, parsed))
    c.add(
      `${field}.address`,
      `${address} is outside the subnet ${known.network.subnet} of network ${quote(networkId)}`,
    );
  return known;
}

function validateNetworks(c: Collector, state: DesiredState): Map<string, KnownNetwork> {
  const byId = new Map<string, KnownNetwork>();
  const byVni = new Map<number, number>();
  let ingressIndex = -1;
  state.networks.forEach((network, index) => {
    const field = `networks[${index}]`;
    if (network.id === '') c.add(`${field}.id`, 'must not be empty');
    else if (byId.has(network.id))
      c.add(
        `${field}.id`,
        `${quote(network.id)} is already used by networks[${byId.get(network.id)?.index}]`,
      );
    if (!Number.isInteger(network.vni) || network.vni < 1 || network.vni > MAX_VNI)
      c.add(`${field}.vni`, `must be an integer 1..${MAX_VNI}, got ${network.vni}`);
    else if (byVni.has(network.vni))
      c.add(`${field}.vni`, `VNI ${network.vni} is already used by networks[${byVni.get(network.vni)}]`);
    else byVni.set(network.vni, index);
    const cidr = parseCidr(network.subnet);
    if (cidr === null)
      c.add(
        `${field}.subnet`,
        `must be an IPv4 CIDR with zero host bits like 10.0.1.0/24, got ${quote(network.subnet)}`,
      );
    else
      for (const other of byId.values())
        if (other.cidr && cidrsOverlap(other.cidr, cidr))
          c.add(
            `${field}.subnet`,
            `${network.subnet} overlaps ${other.network.subnet} of networks[${other.index}] (${quote(other.network.id)})`,
          );
    for (const name of ['gateway', 'lbAddress'] as const) {
      if (network[name] === '') continue;
      const parsed = checkAddress(c, `${field}.${name}`, network[name]);
      if (parsed !== null && cidr !== null && !cidrContains(cidr, parsed))
        c.add(`${field}.${name}`, `${network[name]} is outside the network's subnet ${network.subnet}`);
    }
    if (network.mtu !== 0 && (network.mtu < 576 || network.mtu > 65535))
      c.add(`${field}.mtu`, `must be 0 (underlay MTU - 50) or 576..65535, got ${network.mtu}`);
    network.peers.forEach((peer, peerIndex) => {
      checkAddress(c, `${field}.peers[${peerIndex}].underlayAddress`, peer.underlayAddress);
    });
    if (network.ingress) {
      if (ingressIndex >= 0)
        c.add(`${field}.ingress`, `only one ingress network allowed; networks[${ingressIndex}] is one`);
      else ingressIndex = index;
    }
    if (network.id !== '' && !byId.has(network.id)) byId.set(network.id, { network, index, cidr });
  });
  return byId;
}

function validateServices(c: Collector, state: DesiredState, networks: Map<string, KnownNetwork>): void {
  const serviceIds = new Map<string, number>();
  const published = new Map<string, string>();
  const hasIngress = state.networks.some((n) => n.ingress);
  state.services.forEach((service, index) => {
    const field = `services[${index}]`;
    if (service.id === '') c.add(`${field}.id`, 'must not be empty');
    else if (serviceIds.has(service.id))
      c.add(`${field}.id`, `${quote(service.id)} is already used by services[${serviceIds.get(service.id)}]`);
    else serviceIds.set(service.id, index);
    if (!Object.values(EndpointMode).includes(service.endpointMode) || service.endpointMode < 0)
      c.add(
        `${field}.endpointMode`,
        `must be ENDPOINT_MODE_VIP or ENDPOINT_MODE_DNSRR, got ${service.endpointMode}`,
      );
    const scheduler = service.lb?.scheduler ?? '';
    if (!(KNOWN_SCHEDULERS as readonly string[]).includes(scheduler))
      c.add(`${field}.lb.scheduler`, `must be one of rr, random, sh, wrr, lc, mh, got ${quote(scheduler)}`);
    service.vips.forEach((vip, vipIndex) => {
      const known = checkNetworkAddress(
        c,
        networks,
        `${field}.vips[${vipIndex}]`,
        vip.networkId,
        vip.address,
      );
      // Balanced connections are SNATed to the LB address so replies return through this node.
      if (known !== undefined && known.network.lbAddress === '' && service.ports.length > 0)
        c.add(
          `networks[${known.index}].lbAddress`,
          `is required: service ${quote(service.id)} has a VIP on network ${quote(vip.networkId)}`,
        );
    });
    service.ports.forEach((port, portIndex) => {
      const portField = `${field}.ports[${portIndex}]`;
      if (port.protocol !== Protocol.PROTOCOL_TCP && port.protocol !== Protocol.PROTOCOL_UDP)
        c.add(`${portField}.protocol`, `must be PROTOCOL_TCP or PROTOCOL_UDP, got ${port.protocol}`);
      checkPort(c, `${portField}.targetPort`, port.targetPort, false);
      checkPort(c, `${portField}.publishedPort`, port.publishedPort, true);
      checkPort(c, `${portField}.healthPort`, port.healthPort, true);
      if (port.publishedPort === 0) return;
      const mode = port.publishMode;
      if (
        mode !== PublishMode.PUBLISH_MODE_INGRESS &&
        mode !== PublishMode.PUBLISH_MODE_LOCAL &&
        mode !== PublishMode.PUBLISH_MODE_HOST
      )
        c.add(
          `${portField}.publishMode`,
          `must be PUBLISH_MODE_INGRESS, PUBLISH_MODE_LOCAL or PUBLISH_MODE_HOST, got ${mode}`,
        );
      const ingress = state.networks.findIndex((n) => n.ingress);
      if (mode !== PublishMode.PUBLISH_MODE_HOST && !hasIngress)
        c.add(
          `${portField}.publishedPort`,
          `port ${port.publishedPort} is published but no network has ingress: true`,
        );
      else if (
        mode === PublishMode.PUBLISH_MODE_INGRESS &&
        ingress >= 0 &&
        state.networks[ingress]?.lbAddress === ''
      )
        c.add(
          `networks[${ingress}].lbAddress`,
          `is required on the ingress network: port ${port.publishedPort} of service ${quote(service.id)} is published`,
        );
      if (port.healthPort !== 0 && mode !== PublishMode.PUBLISH_MODE_LOCAL)
        c.add(`${portField}.healthPort`, 'is only accepted with publishMode PUBLISH_MODE_LOCAL');
      const key = `${port.protocol}/${port.publishedPort}`;
      const owner = published.get(key);
      if (owner !== undefined)
        c.add(`${portField}.publishedPort`, `port ${port.publishedPort} is already published by ${owner}`);
      else published.set(key, portField);
    });
    service.endpoints.forEach((endpoint, endpointIndex) => {
      const endpointField = `${field}.endpoints[${endpointIndex}]`;
      checkNetworkAddress(c, networks, endpointField, endpoint.networkId, endpoint.address);
      if (
        endpoint.state !== EndpointState.ENDPOINT_STATE_ACTIVE &&
        endpoint.state !== EndpointState.ENDPOINT_STATE_DRAINING
      )
        c.add(
          `${endpointField}.state`,
          `must be ENDPOINT_STATE_ACTIVE or ENDPOINT_STATE_DRAINING, got ${endpoint.state}`,
        );
    });
  });
}

/** Every problem in `state`, in field order; [] when it may be applied. */
export function validateDesiredState(state: DesiredState): ValidationIssue[] {
  const c = new Collector();
  if (state.node === undefined) c.add('node', 'is required (id and underlayAddress)');
  else {
    if (state.node.id === '') c.add('node.id', 'must not be empty');
    checkAddress(c, 'node.underlayAddress', state.node.underlayAddress);
    checkPort(c, 'node.dataPathPort', state.node.dataPathPort, true);
  }
  const networks = validateNetworks(c, state);
  const taskIds = new Map<string, number>();
  state.sandboxes.forEach((sandbox, index) => {
    const field = `sandboxes[${index}]`;
    if (sandbox.taskId === '') c.add(`${field}.taskId`, 'must not be empty');
    else if (taskIds.has(sandbox.taskId))
      c.add(
        `${field}.taskId`,
        `${quote(sandbox.taskId)} is already used by sandboxes[${taskIds.get(sandbox.taskId)}]`,
      );
    else taskIds.set(sandbox.taskId, index);
    sandbox.attachments.forEach((attachment, attachmentIndex) => {
      const attachmentField = `${field}.attachments[${attachmentIndex}]`;
      checkNetworkAddress(c, networks, attachmentField, attachment.networkId, attachment.address);
      if (!isMac(attachment.mac))
        c.add(
          `${attachmentField}.mac`,
          `must be a lowercase MAC like 02:42:0a:00:01:02, got ${quote(attachment.mac)}`,
        );
    });
  });
  state.remoteEndpoints.forEach((remote, index) => {
    const field = `remoteEndpoints[${index}]`;
    checkNetworkAddress(c, networks, field, remote.networkId, remote.address);
    if (!isMac(remote.mac))
      c.add(`${field}.mac`, `must be a lowercase MAC like 02:42:0a:00:01:02, got ${quote(remote.mac)}`);
    checkAddress(c, `${field}.vtep`, remote.vtep);
  });
  validateServices(c, state, networks);
  return c.issues;
}

/** Throws one ValidationError naming the first bad field and listing every issue. */
export function assertValidDesiredState(state: DesiredState): void {
  const issues = validateDesiredState(state);
  const first = issues[0];
  if (first === undefined) return;
  const more =
    issues.length > 1
      ? ` (and ${issues.length - 1} more: ${issues
          .slice(1)
          .map((i) => i.message)
          .join('; ')})`
      : '';
  throw new ValidationError(first.field, `invalid desired state: ${first.message}${more}`, {
    issues: issues.map((i) => i.message),
  });
}
