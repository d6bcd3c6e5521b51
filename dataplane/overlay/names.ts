import { createHash } from 'node:crypto';
import { ValidationError } from '../../src/common/errors.js';

/**
 * Names of the kernel objects the overlay and sandboxes create, in one place
 * so the LB backend, DNS and tests agree on them. Every namespace of a node
 * starts with that node's prefix (several lab "hosts" share one kernel).
 */

/** Bridge of a network namespace. */
export const BRIDGE_IF = 'br0';
/** The vxlan device, once moved into the network namespace. */
export const VXLAN_IF = 'vx0';
/** Network-namespace end of the link to the host namespace (egress, published ports). */
export const NETWORK_HOST_IF = 'hl0';

const SHORT = 12;
const HOST_PREFIX_PATTERN = /^[a-z0-9][a-z0-9_]{0,15}-$/;

/**
 * The overlay and sandbox programmers delete every namespace under their
 * prefix that the desired state does not name, so the prefix must be one only
 * meshd uses: non-empty and ending in "-" ("md-" on a host, "<lab>h1-" in the lab).
 * An empty prefix would make `n*`/`t*` namespaces of other software look like ours.
 */
export function validateHostPrefix(hostPrefix: string, field = 'hostPrefix'): string {
  if (!HOST_PREFIX_PATTERN.test(hostPrefix)) {
    throw new ValidationError(
      field,
      `${field}: namespace prefix must match ${HOST_PREFIX_PATTERN} (e.g. "md-"), got ${JSON.stringify(hostPrefix)}; ` +
        'meshd deletes undesired namespaces under it, so it must not be empty',
    );
  }
  return hostPrefix;
}

function short(id: string): string {
  const clean = id.toLowerCase().replace(/[^a-z0-9]/g, '');
  // IDs that are not already short and clean get a hash so two never collide.
  if (clean.length > 0 && clean.length <= SHORT && clean === id) return clean;
  return createHash('sha256').update(id).digest('hex').slice(0, SHORT);
}

/**
 * `<host prefix>n<network id>`, lowercased, other characters as "-", at most
 * 40 characters: the same rule as dataplane/reconciler/node.ts, so the LB's
 * scope resolver and the overlay always agree on the namespace.
 */
export function networkNetnsName(hostPrefix: string, networkId: string): string {
  const id = networkId.toLowerCase().replace(/[^a-z0-9_-]/g, '-');
  return `${hostPrefix}n${id}`.slice(0, 40);
}

export function sandboxNetnsName(hostPrefix: string, taskId: string): string {
  return `${hostPrefix}t${short(taskId)}`;
}

/** Where a vxlan is created (host namespace) before it moves: unique per VNI. */
export function vxlanStagingName(vni: number): string {
  return `vx${vni}`;
}

/** Host-namespace end of a network's host link. */
export function hostLinkName(vni: number): string {
  return `mh${vni}`;
}

/** Network-namespace end of a sandbox's veth: stable per (task, attachment), ≤ 15 characters. */
export function sandboxVethName(taskId: string, index: number): string {
  return `v${createHash('sha256').update(`${taskId}/${index}`).digest('hex').slice(0, 10)}`;
}

/** Interface name of attachment `index` inside a sandbox. */
export function sandboxIfName(index: number): string {
  return `eth${index}`;
}

/**
 * The MAC meshd gives an address it owns (LB addresses, bridges): 02:42 and
 * the four address bytes, so every node can derive a peer's MAC from its IP.
 */
export function macFromIpv4(address: string): string {
  return `02:42:${address
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join(':')}`;
}
