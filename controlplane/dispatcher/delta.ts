import {
  type DesiredState,
  DnsOptions,
  Network,
  NodeInfo,
  RemoteEndpoint,
  Sandbox,
  Service,
} from '../../src/api/gen/meshd/v1/dataplane.js';
import type { DesiredStateDelta, RemoteEndpointKey } from '../../src/api/gen/meshd/v1/dispatcher.js';

/**
 * Increments of a node's DesiredState: after the complete state, a session
 * carries only what changed, element by element, so a change costs the size of
 * the change, not of the cluster. `applyDelta(a, diffDesiredState(a, b))`
 * equals `b` (property-tested).
 */
interface Encoder<T> {
  encode(message: T): { finish(): Uint8Array };
}

function same<T>(codec: Encoder<T>, a: T | undefined, b: T | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Buffer.from(codec.encode(a).finish()).equals(Buffer.from(codec.encode(b).finish()));
}

function diffList<T>(
  codec: Encoder<T>,
  key: (item: T) => string,
  before: T[],
  after: T[],
): { upsert: T[]; remove: string[] } {
  const old = new Map(before.map((item) => [key(item), item]));
  const upsert: T[] = [];
  for (const item of after) {
    const k = key(item);
    if (!same(codec, old.get(k), item)) upsert.push(item);
    old.delete(k);
  }
  return { upsert, remove: [...old.keys()] };
}

function applyList<T>(key: (item: T) => string, before: T[], upsert: T[], remove: string[]): T[] {
  const byKey = new Map(before.map((item) => [key(item), item]));
  for (const k of remove) byKey.delete(k);
  for (const item of upsert) byKey.set(key(item), item);
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, item]) => item);
}

const networkKey = (n: Network) => n.id;
const sandboxKey = (s: Sandbox) => s.taskId;
const remoteKey = (r: { networkId: string; address: string }) => `${r.networkId}/${r.address}`;
const serviceKey = (s: Service) => s.id;

export function diffDesiredState(before: DesiredState, after: DesiredState): DesiredStateDelta {
  const networks = diffList(Network, networkKey, before.networks, after.networks);
  const sandboxes = diffList(Sandbox, sandboxKey, before.sandboxes, after.sandboxes);
  const remotes = diffList(RemoteEndpoint, remoteKey, before.remoteEndpoints, after.remoteEndpoints);
  const services = diffList(Service, serviceKey, before.services, after.services);
  return {
    node: same(NodeInfo, before.node, after.node) ? undefined : after.node,
    dns: same(DnsOptions, before.dns, after.dns) ? undefined : after.dns,
    upsertNetworks: networks.upsert,
    removeNetworks: networks.remove,
    upsertSandboxes: sandboxes.upsert,
    removeSandboxes: sandboxes.remove,
    upsertRemoteEndpoints: remotes.upsert,
    removeRemoteEndpoints: remotes.remove.map(splitRemoteKey),
    upsertServices: services.upsert,
    removeServices: services.remove,
  };
}

export function applyDelta(before: DesiredState, delta: DesiredStateDelta, version: number): DesiredState {
  return {
    version,
    node: delta.node ?? before.node,
    dns: delta.dns ?? before.dns,
    networks: applyList(networkKey, before.networks, delta.upsertNetworks, delta.removeNetworks),
    sandboxes: applyList(sandboxKey, before.sandboxes, delta.upsertSandboxes, delta.removeSandboxes),
    remoteEndpoints: applyList(
      remoteKey,
      before.remoteEndpoints,
      delta.upsertRemoteEndpoints,
      delta.removeRemoteEndpoints.map(remoteKey),
    ),
    services: applyList(serviceKey, before.services, delta.upsertServices, delta.removeServices),
  };
}

export function isEmptyDelta(delta: DesiredStateDelta): boolean {
  return (
    delta.node === undefined &&
    delta.dns === undefined &&
    delta.upsertNetworks.length + delta.removeNetworks.length === 0 &&
    delta.upsertSandboxes.length + delta.removeSandboxes.length === 0 &&
    delta.upsertRemoteEndpoints.length + delta.removeRemoteEndpoints.length === 0 &&
    delta.upsertServices.length + delta.removeServices.length === 0
  );
}

function splitRemoteKey(key: string): RemoteEndpointKey {
  const slash = key.indexOf('/');
  return { networkId: key.slice(0, slash), address: key.slice(slash + 1) };
}
