import { PortConfig, Protocol, PublishMode } from '../../src/api/gen/meshd/v1/dataplane.js';
import { Cluster, ClusterSpec, NetworkObject } from '../../src/api/gen/meshd/v1/objects.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreView } from '../store/types.js';

/** Cluster-wide allocation defaults; a Cluster object's spec overrides them field by field. */
export interface AllocatorConfig {
  defaultAddressPools: string[];
  /** Prefix length of subnets carved from the pools. /20 (4094 hosts), not swarm's /24 (moby#31019). */
  subnetSize: number;
  publishedPortStart: number;
  publishedPortEnd: number;
}

export const DEFAULT_ALLOCATOR_CONFIG: AllocatorConfig = {
  defaultAddressPools: ['10.0.0.0/8'],
  subnetSize: 20,
  publishedPortStart: 30000,
  publishedPortEnd: 32767,
};

export const INGRESS_NETWORK_NAME = 'ingress';
export const DEFAULT_INGRESS_SUBNET = '10.255.0.0/16';
/** VNIs below this are left to hand-made networks (swarm starts at 4096 too). */
export const FIRST_VNI = 4096;
export const LAST_VNI = 16_777_215;

export function allocatorConfigFrom(view: StoreView): AllocatorConfig {
  const spec = view.list('cluster')[0]?.spec;
  if (spec === undefined) return DEFAULT_ALLOCATOR_CONFIG;
  return {
    defaultAddressPools:
      spec.defaultAddressPools.length > 0
        ? spec.defaultAddressPools
        : DEFAULT_ALLOCATOR_CONFIG.defaultAddressPools,
    subnetSize: spec.subnetSize || DEFAULT_ALLOCATOR_CONFIG.subnetSize,
    publishedPortStart: spec.publishedPortStart || DEFAULT_ALLOCATOR_CONFIG.publishedPortStart,
    publishedPortEnd: spec.publishedPortEnd || DEFAULT_ALLOCATOR_CONFIG.publishedPortEnd,
  };
}

/** Protocol and publish mode with their defaults filled in (tcp, ingress). */
export function normalizedPort(p: PortConfig): PortConfig {
  return PortConfig.fromPartial({
    ...p,
    protocol: p.protocol === Protocol.PROTOCOL_UNSPECIFIED ? Protocol.PROTOCOL_TCP : p.protocol,
    publishMode:
      p.publishMode === PublishMode.PUBLISH_MODE_UNSPECIFIED
        ? PublishMode.PUBLISH_MODE_INGRESS
        : p.publishMode,
  });
}

/** Ports that every node listens on (ingress and local modes) are unique cluster-wide. */
export function isClusterWidePort(p: PortConfig): boolean {
  return p.publishMode !== PublishMode.PUBLISH_MODE_HOST;
}

export function portLabel(port: number, protocol: Protocol): string {
  return `${port}/${protocol === Protocol.PROTOCOL_UDP ? 'udp' : 'tcp'}`;
}

/**
 * The objects a new cluster starts with: the Cluster itself and the ingress
 * network (allocated by the first allocator pass like any other network).
 */
export function bootstrapCluster(opts: {
  nowMs: number;
  clusterId: string;
  ingressNetworkId: string;
  name?: string;
  spec?: Partial<ClusterSpec>;
  ingressSubnet?: string;
}): TransactionBuilder {
  const cluster = Cluster.fromPartial({
    meta: { id: opts.clusterId },
    name: opts.name ?? 'default',
    spec: ClusterSpec.fromPartial({ taskHistoryLimit: 5, unknownGraceMs: 30_000, ...opts.spec }),
  });
  const ingress = NetworkObject.fromPartial({
    meta: { id: opts.ingressNetworkId },
    name: INGRESS_NETWORK_NAME,
    driver: 'overlay',
    ingress: true,
    requestedSubnet: opts.ingressSubnet ?? DEFAULT_INGRESS_SUBNET,
  });
  return new TransactionBuilder(opts.nowMs).create('cluster', cluster).create('network', ingress);
}
