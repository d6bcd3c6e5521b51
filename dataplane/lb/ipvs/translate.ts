import {
  type DesiredState,
  EndpointMode,
  Protocol,
  PublishMode,
} from '../../../src/api/gen/meshd/v1/dataplane.js';
import type { IpvsDestination, IpvsService, IpvsServiceKey } from '../../netlink/ipvs/types.js';
import { sortBackends } from '../model.js';
import {
  ANY_LOCAL_ADDRESS,
  type LbProtocol,
  type LbScheduler,
  type LbScope,
  type LbVirtualService,
  virtualServiceKey,
} from '../types.js';
import type { ScopeNetfilter } from './namespace.js';

/**
 * The LB model <-> IPVS objects (pure).
 *
 * A service with a VIP becomes an IPVS service keyed by protocol + VIP + port
 * (kube-proxy's choice, not libnetwork's fwmark): no netfilter rule per
 * service, one generic-netlink message per change, and a dump maps straight
 * back to the model's (scope, protocol, address, port) identity. A published
 * port matches *every* local address, which only a firewall mark can express,
 * so those become fwmark services with a mark derived from protocol + port
 * (decodable on dump, never stored anywhere else).
 */

export type IpvsSchedulerName = 'rr' | 'wrr' | 'lc' | 'sh' | 'mh';
export const IPVS_SCHEDULERS: readonly IpvsSchedulerName[] = ['rr', 'wrr', 'lc', 'sh', 'mh'];

/** What the model does not carry but IPVS can do per service (from the desired state's LbOptions). */
export interface IpvsServiceOptions {
  scheduler: IpvsSchedulerName;
  /** 0 = keep the kernel's value. */
  tcpTimeoutS: number;
  tcpFinTimeoutS: number;
  udpTimeoutS: number;
  /** How long a draining destination keeps its connections before it is removed anyway. */
  drainTimeoutMs: number;
}

export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

/**
 * Marks: published-port services are 0x4d5 in the top 12 bits ("M5"), the
 * SNAT bit (also set on VIP traffic that postrouting SNATs), a UDP bit and
 * the port. A published port that needs SNAT therefore has its own mark and
 * its own IPVS service; a change of SNAT is a remove + add.
 */
const PORT_MARK_BASE = 0x4d500000;
const PORT_MARK_MASK = 0xfff00000;
export const SNAT_MARK = 0x00080000;
const PORT_MARK_UDP = 0x00010000;

export function publishedPortMark(protocol: LbProtocol, port: number, snat: boolean): number {
  return (PORT_MARK_BASE | (snat ? SNAT_MARK : 0) | (protocol === 'udp' ? PORT_MARK_UDP : 0) | port) >>> 0;
}

export function markToPublishedPort(
  mark: number,
): { protocol: LbProtocol; port: number; snat: boolean } | null {
  if ((mark & PORT_MARK_MASK) >>> 0 !== PORT_MARK_BASE) return null;
  return {
    protocol: mark & PORT_MARK_UDP ? 'udp' : 'tcp',
    port: mark & 0xffff,
    snat: (mark & SNAT_MARK) !== 0,
  };
}

export function ipvsKeyOf(service: LbVirtualService): IpvsServiceKey {
  if (service.address === ANY_LOCAL_ADDRESS) {
    return {
      kind: 'fwmark',
      fwmark: publishedPortMark(service.protocol, service.port, service.snatAddress !== null),
    };
  }
  return { kind: 'inet', protocol: service.protocol, address: service.address, port: service.port };
}

/** rr for "random", sh for "source-hash", unless the service asked for a specific IPVS scheduler. */
export function defaultScheduler(scheduler: LbScheduler): IpvsSchedulerName {
  return scheduler === 'source-hash' ? 'sh' : 'rr';
}

export function toIpvsService(
  service: LbVirtualService,
  options: IpvsServiceOptions | undefined,
): IpvsService {
  const scheduler = options?.scheduler ?? defaultScheduler(service.scheduler);
  return {
    key: ipvsKeyOf(service),
    scheduler,
    // sh/mh: fall back to another destination when the hashed one has weight 0 (draining).
    schedFlags: { flag1: scheduler === 'sh' || scheduler === 'mh', flag2: false, flag3: false },
    persistenceS: 0,
    netmask: 0xffffffff,
    onePacket: false,
    persistenceEngine: '',
  };
}

export function toIpvsDestinations(service: LbVirtualService): IpvsDestination[] {
  return service.backends.map((b) => ({
    address: b.address,
    port: b.port,
    forward: 'masq',
    weight: b.weight,
    upperThreshold: 0,
    lowerThreshold: 0,
  }));
}

/** Reads a kernel service back into the model; null for services meshd did not make. */
export function fromIpvs(
  scope: LbScope,
  service: IpvsService,
  destinations: readonly IpvsDestination[],
  snatAddress: string | null,
): LbVirtualService | null {
  let protocol: LbProtocol;
  let address: string;
  let port: number;
  let snat = snatAddress;
  if (service.key.kind === 'fwmark') {
    const published = markToPublishedPort(service.key.fwmark);
    if (published === null) return null;
    ({ protocol, port } = published);
    address = ANY_LOCAL_ADDRESS;
    if (!published.snat) snat = null;
  } else {
    if (service.key.protocol === 'sctp') return null;
    ({ protocol, address, port } = service.key);
  }
  return {
    key: virtualServiceKey(scope, protocol, address, port),
    scope,
    protocol,
    address,
    port,
    // The model's two kinds (model.ts schedulerOf): sh and mh hash the source, the rest do not.
    scheduler: service.scheduler === 'sh' || service.scheduler === 'mh' ? 'source-hash' : 'random',
    snatAddress: snat,
    backends: sortBackends(destinations.map((d) => ({ address: d.address, port: d.port, weight: d.weight }))),
  };
}

/**
 * Per-service IPVS options from the desired state, keyed like the model's
 * virtual services (so they follow VIPs and published ports alike).
 */
export function ipvsOptionsFromDesired(state: DesiredState): Map<string, IpvsServiceOptions> {
  const out = new Map<string, IpvsServiceOptions>();
  const networks = new Map(state.networks.map((n) => [n.id, n]));
  const ingress = state.networks.find((n) => n.ingress);
  for (const service of state.services) {
    const lb = service.lb;
    const asked = (lb?.scheduler ?? '') as IpvsSchedulerName;
    const options: IpvsServiceOptions = {
      scheduler: IPVS_SCHEDULERS.includes(asked) ? asked : 'rr',
      tcpTimeoutS: lb?.tcpTimeoutS ?? 0,
      tcpFinTimeoutS: lb?.tcpFinTimeoutS ?? 0,
      udpTimeoutS: lb?.udpTimeoutS ?? 0,
      drainTimeoutMs: lb?.drainTimeoutMs || DEFAULT_DRAIN_TIMEOUT_MS,
    };
    for (const port of service.ports) {
      const protocol: LbProtocol = port.protocol === Protocol.PROTOCOL_UDP ? 'udp' : 'tcp';
      if (service.endpointMode !== EndpointMode.ENDPOINT_MODE_DNSRR) {
        for (const vip of service.vips) {
          if (!networks.has(vip.networkId)) continue;
          const scope: LbScope = { kind: 'network', networkId: vip.networkId };
          out.set(virtualServiceKey(scope, protocol, vip.address, port.targetPort), options);
        }
      }
      if (port.publishedPort === 0) continue;
      out.set(virtualServiceKey({ kind: 'host' }, protocol, ANY_LOCAL_ADDRESS, port.publishedPort), options);
      const mode = port.publishMode;
      if (
        (mode === PublishMode.PUBLISH_MODE_INGRESS || mode === PublishMode.PUBLISH_MODE_UNSPECIFIED) &&
        ingress
      ) {
        const scope: LbScope = { kind: 'network', networkId: ingress.id };
        out.set(virtualServiceKey(scope, protocol, ingress.lbAddress, port.publishedPort), options);
      }
    }
  }
  return out;
}

/**
 * IPVS idle timeouts are per network namespace, not per service. A scope's
 * value is the largest any of its services asked for: a service may keep an
 * idle connection longer than it asked, never shorter (what swarm users hit
 * with the fixed 900 s, moby#31208). 0 = nobody asked: leave the kernel's.
 */
export function scopeTimeouts(options: Iterable<IpvsServiceOptions>): {
  tcpS: number;
  tcpFinS: number;
  udpS: number;
} {
  const out = { tcpS: 0, tcpFinS: 0, udpS: 0 };
  for (const o of options) {
    out.tcpS = Math.max(out.tcpS, o.tcpTimeoutS);
    out.tcpFinS = Math.max(out.tcpFinS, o.tcpFinTimeoutS);
    out.udpS = Math.max(out.udpS, o.udpTimeoutS);
  }
  return out;
}

/** Whether two option maps ask for the same idle timeouts, service by service. */
export function sameTimeouts(
  a: Map<string, IpvsServiceOptions>,
  b: Map<string, IpvsServiceOptions>,
): boolean {
  if (a.size !== b.size) return false;
  for (const [key, o] of a) {
    const p = b.get(key);
    if (
      p === undefined ||
      p.tcpTimeoutS !== o.tcpTimeoutS ||
      p.tcpFinTimeoutS !== o.tcpFinTimeoutS ||
      p.udpTimeoutS !== o.udpTimeoutS
    )
      return false;
  }
  return true;
}

/** What a namespace's netfilter table and VIP link must hold for these services. */
export function netfilterSpecOf(services: readonly LbVirtualService[]): ScopeNetfilter {
  return {
    snatAddress: services.find((s) => s.snatAddress !== null)?.snatAddress ?? null,
    vips: services
      .filter((s) => s.address !== ANY_LOCAL_ADDRESS)
      .map((s) => ({ protocol: s.protocol, address: s.address, port: s.port })),
    published: services
      .filter((s) => s.address === ANY_LOCAL_ADDRESS)
      .map((s) => ({
        protocol: s.protocol,
        port: s.port,
        mark: publishedPortMark(s.protocol, s.port, s.snatAddress !== null),
      })),
  };
}
