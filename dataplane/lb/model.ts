import {
  type DesiredState,
  EndpointMode,
  EndpointState,
  type Network,
  type PortConfig,
  Protocol,
  PublishMode,
  type Service,
} from '../../src/api/gen/meshd/v1/dataplane.js';
import { assertNever } from '../../src/common/errors.js';
import {
  ANY_LOCAL_ADDRESS,
  emptyLbState,
  type LbBackend,
  type LbProtocol,
  type LbScheduler,
  type LbScope,
  type LbState,
  type LbVirtualService,
  virtualServiceKey,
} from './types.js';

/**
 * desired state -> the LB model of one node (pure). The topology it assumes,
 * which overlay/sandbox build (see dataplane/lb/README.md):
 * - VIPs live in their network's namespace; SNAT to the network's lb_address.
 * - An ingress-mode published port: the host namespace DNATs every local
 *   address's port to the ingress network's lb_address (reached through a link
 *   into the ingress namespace), where it is balanced over all the service's
 *   ingress endpoints cluster-wide with SNAT to lb_address.
 * - A local-mode (and host-mode) published port: the host namespace DNATs
 *   straight to this node's active endpoints, without SNAT (client address kept).
 * A state must pass `validateDesiredState` first.
 */
export function desiredLbState(state: DesiredState): LbState {
  const lb = emptyLbState();
  const nodeId = state.node?.id ?? '';
  const networks = new Map(state.networks.map((n) => [n.id, n]));
  const ingress = state.networks.find((n) => n.ingress);
  for (const service of state.services) {
    const scheduler = schedulerOf(service);
    for (const port of service.ports) {
      const protocol = protocolOf(port.protocol);
      if (service.endpointMode !== EndpointMode.ENDPOINT_MODE_DNSRR)
        for (const vip of service.vips) {
          const network = networks.get(vip.networkId);
          if (network === undefined) continue;
          add(lb, {
            scope: { kind: 'network', networkId: network.id },
            protocol,
            address: vip.address,
            port: port.targetPort,
            scheduler,
            snatAddress: snatOf(network),
            backends: backendsOf(service, port, (e) => e.networkId === network.id),
          });
        }
      if (port.publishedPort === 0) continue;
      addPublished(lb, { service, port, protocol, scheduler, nodeId, ingress });
    }
  }
  return lb;
}

interface PublishedInput {
  service: Service;
  port: PortConfig;
  protocol: LbProtocol;
  scheduler: LbScheduler;
  nodeId: string;
  ingress: Network | undefined;
}

function addPublished(lb: LbState, p: PublishedInput): void {
  const host: LbScope = { kind: 'host' };
  switch (p.port.publishMode) {
    case PublishMode.PUBLISH_MODE_UNSPECIFIED:
    case PublishMode.PUBLISH_MODE_INGRESS: {
      const ingress = p.ingress;
      if (ingress === undefined || ingress.lbAddress === '') return;
      add(lb, {
        scope: host,
        protocol: p.protocol,
        address: ANY_LOCAL_ADDRESS,
        port: p.port.publishedPort,
        scheduler: 'random',
        snatAddress: null,
        backends: [{ address: ingress.lbAddress, port: p.port.publishedPort, weight: 1 }],
      });
      add(lb, {
        scope: { kind: 'network', networkId: ingress.id },
        protocol: p.protocol,
        address: ingress.lbAddress,
        port: p.port.publishedPort,
        scheduler: p.scheduler,
        snatAddress: snatOf(ingress),
        backends: backendsOf(p.service, p.port, (e) => e.networkId === ingress.id),
      });
      return;
    }
    case PublishMode.PUBLISH_MODE_LOCAL:
    case PublishMode.PUBLISH_MODE_HOST: {
      const local = p.service.endpoints.filter((e) => e.nodeId === p.nodeId);
      const onIngress = local.filter((e) => e.networkId === p.ingress?.id);
      const chosen = new Set(onIngress.length > 0 ? onIngress : local);
      add(lb, {
        scope: host,
        protocol: p.protocol,
        address: ANY_LOCAL_ADDRESS,
        port: p.port.publishedPort,
        scheduler: p.scheduler,
        snatAddress: null,
        backends: backendsOf(p.service, p.port, (e) => chosen.has(e)),
      });
      if (p.port.healthPort !== 0)
        lb.healthPorts.set(p.port.healthPort, {
          port: p.port.healthPort,
          serviceId: p.service.id,
          healthy: local.some((e) => e.state === EndpointState.ENDPOINT_STATE_ACTIVE),
        });
      return;
    }
    default:
      return;
  }
}

function add(lb: LbState, service: Omit<LbVirtualService, 'key'>): void {
  const key = virtualServiceKey(service.scope, service.protocol, service.address, service.port);
  lb.services.set(key, { key, ...service });
}

function backendsOf(
  service: Service,
  port: PortConfig,
  include: (e: Service['endpoints'][number]) => boolean,
) {
  const byAddress = new Map<string, LbBackend>();
  for (const e of service.endpoints) {
    if (!include(e)) continue;
    const weight = e.state === EndpointState.ENDPOINT_STATE_ACTIVE ? 1 : 0;
    const seen = byAddress.get(e.address);
    // The same task listed twice keeps its most permissive state.
    if (seen === undefined || seen.weight < weight)
      byAddress.set(e.address, { address: e.address, port: port.targetPort, weight });
  }
  return sortBackends([...byAddress.values()]);
}

export function sortBackends(backends: LbBackend[]): LbBackend[] {
  return backends.sort((a, b) => compareAddresses(a.address, b.address) || a.port - b.port);
}

function compareAddresses(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 4; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function snatOf(network: Network): string | null {
  return network.lbAddress === '' ? null : network.lbAddress;
}

function schedulerOf(service: Service): LbScheduler {
  const name = service.lb?.scheduler ?? '';
  // nftables can pick at random or by a hash of the source; IPVS-only names map to the nearer one.
  return name === 'sh' || name === 'mh' ? 'source-hash' : 'random';
}

function protocolOf(protocol: Protocol): LbProtocol {
  switch (protocol) {
    case Protocol.PROTOCOL_UDP:
      return 'udp';
    case Protocol.PROTOCOL_TCP:
    case Protocol.PROTOCOL_UNSPECIFIED:
    case Protocol.UNRECOGNIZED:
      return 'tcp';
    default:
      return assertNever(protocol, 'protocol');
  }
}
