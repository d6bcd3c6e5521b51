/**
 * The sysctls set in every scope namespace before its first service, each
 * for a reason:
 * - net.ipv4.ip_forward=1: a masqueraded reply from a remote endpoint is
 *   un-SNATed to the client's address and must be forwarded (without it the
 *   SYN-ACK died on the director in the VM lab).
 * - vs.conntrack=1: keep conntrack entries for IPVS connections, or the SNAT
 *   in postrouting never sees them (replies from remote endpoints went astray).
 * - vs.conn_reuse_mode=1: a new connection reusing a source port is scheduled
 *   afresh (so it avoids weight-0 destinations); the 1 s stall this caused
 *   with conntrack=1 was fixed in Linux 5.9.
 * - vs.expire_nodest_conn=1: packets of a connection whose destination was
 *   removed expire it at once instead of being dropped until the timeout
 *   (the stale-entry blackhole of moby#36878).
 * - vs.expire_quiescent_template=1: persistence templates to a weight-0
 *   destination expire, so draining really moves persistent clients away.
 */
export const LB_SYSCTLS: Readonly<Record<string, number>> = {
  'net.ipv4.ip_forward': 1,
  'net.ipv4.vs.conntrack': 1,
  'net.ipv4.vs.conn_reuse_mode': 1,
  'net.ipv4.vs.expire_nodest_conn': 1,
  'net.ipv4.vs.expire_quiescent_template': 1,
};
