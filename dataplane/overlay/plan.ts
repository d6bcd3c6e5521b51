import {
  bridgeSignature,
  entryKey,
  networkSignature,
  type OverlayModel,
  type OverlayNetwork,
  type OverlayPeerEntry,
} from './model.js';

export type OverlayChange =
  | { type: 'create-network'; network: OverlayNetwork }
  | { type: 'delete-network'; netns: string; vni: number | null }
  /** In place: the bridge's MAC and addresses (`network` is the desired whole, for describe). */
  | { type: 'set-bridge'; network: OverlayNetwork; addAddresses: string[]; removeAddresses: string[] }
  | { type: 'set-entry'; entry: OverlayPeerEntry }
  | { type: 'delete-entry'; entry: OverlayPeerEntry }
  | { type: 'set-egress'; subnets: string[] };

/**
 * Pure: the changes that turn `actual` into `desired`, in the order to apply
 * them (deletions of networks first, so a rebuilt VNI's staging name is free;
 * entries after their network exists). Equal models give [].
 */
export function planOverlay(desired: OverlayModel, actual: OverlayModel): OverlayChange[] {
  const changes: OverlayChange[] = [];
  const rebuilt = new Set<string>();
  for (const [netns, a] of actual.networks) {
    const d = desired.networks.get(netns);
    if (d === undefined || networkSignature(d) !== networkSignature(a)) {
      changes.push({ type: 'delete-network', netns, vni: a.vni > 0 ? a.vni : null });
      if (d !== undefined) rebuilt.add(netns);
    }
  }
  for (const [netns, d] of desired.networks) {
    const a = actual.networks.get(netns);
    if (a === undefined || rebuilt.has(netns)) {
      changes.push({ type: 'create-network', network: d });
      rebuilt.add(netns);
    } else if (bridgeSignature(a) !== bridgeSignature(d)) {
      changes.push({
        type: 'set-bridge',
        network: d,
        addAddresses: d.addresses.filter((x) => !a.addresses.includes(x)),
        removeAddresses: a.addresses.filter((x) => !d.addresses.includes(x)),
      });
    }
  }
  for (const [key, e] of desired.entries) {
    const a = actual.entries.get(key);
    if (rebuilt.has(e.netns) || a === undefined || a.mac !== e.mac || a.vtep !== e.vtep) {
      changes.push({ type: 'set-entry', entry: e });
    }
  }
  for (const [key, a] of actual.entries) {
    // A deleted network takes its entries with it.
    if (!desired.entries.has(key) && desired.networks.has(a.netns) && !rebuilt.has(a.netns)) {
      changes.push({ type: 'delete-entry', entry: a });
    }
  }
  if (desired.egressSubnets.join(',') !== actual.egressSubnets.join(',')) {
    changes.push({ type: 'set-egress', subnets: desired.egressSubnets });
  }
  return changes;
}

export { entryKey };
