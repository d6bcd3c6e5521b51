/**
 * Interim overlay + sandboxes for the data-plane acceptance tests, built with
 * iproute2 on engineer K's scripts/lab hosts until dataplane/overlay and
 * dataplane/sandbox land; then this file shrinks to calls into them. It follows
 * the same design: per host and network one namespace with bridge `br0`
 * (gateway + this node's LB address, MAC derived from the LB address) and a
 * vxlan created in the host namespace (UDP socket there) with learning off and
 * ARP proxy on; static FDB + neighbour entries for remote endpoints come from
 * `fdbProgrammer`, so the reconciler repairs them like any other kernel state.
 */
import { execa } from 'execa';
import type { Programmer } from '../../../dataplane/reconciler/reconciler.js';
import type { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';

export async function sh(argv: string[], input?: string): Promise<string> {
  const result = await execa(argv[0]!, argv.slice(1), { reject: false, timeout: 20_000, input: input ?? '' });
  if (result.exitCode !== 0)
    throw new Error(`${argv.join(' ')} failed (exit ${result.exitCode}): ${String(result.stderr).trim()}`);
  return String(result.stdout);
}

export async function ipBatch(netns: string, lines: string[]): Promise<void> {
  await sh(['ip', '-n', netns, '-batch', '-'], `${lines.join('\n')}\n`);
}

export function macOf(address: string): string {
  return `02:42:${address
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join(':')}`;
}

export const VXLAN_DEV = 'vx0';

interface FdbEntry {
  netns: string;
  mac: string;
  address: string;
  vtep: string;
}

/** Static FDB (vxlan `self`) + neighbour entries for every remote endpoint, per network namespace. */
export function fdbProgrammer(
  networkNetns: (networkId: string) => string,
): Programmer<Map<string, FdbEntry>, FdbEntry> {
  const keyOf = (e: FdbEntry) => `${e.netns}/${e.mac}/${e.address}/${e.vtep}`;
  let namespaces: string[] = [];
  return {
    name: 'overlay-fdb',
    desired(state: DesiredState) {
      const out = new Map<string, FdbEntry>();
      namespaces = state.networks.map((n) => networkNetns(n.id));
      for (const r of state.remoteEndpoints) {
        const entry = { netns: networkNetns(r.networkId), mac: r.mac, address: r.address, vtep: r.vtep };
        out.set(keyOf(entry), entry);
      }
      return out;
    },
    async dump() {
      const out = new Map<string, FdbEntry>();
      for (const netns of namespaces) {
        const fdb = JSON.parse(await sh(['bridge', '-n', netns, '-j', 'fdb', 'show', 'dev', VXLAN_DEV])) as {
          mac: string;
          dst?: string;
        }[];
        const neigh = JSON.parse(await sh(['ip', '-n', netns, '-j', 'neigh', 'show', 'dev', VXLAN_DEV])) as {
          dst: string;
          lladdr?: string;
        }[];
        const vtepOf = new Map(fdb.filter((f) => f.dst !== undefined).map((f) => [f.mac, f.dst!]));
        for (const n of neigh) {
          const vtep = n.lladdr === undefined ? undefined : vtepOf.get(n.lladdr);
          if (vtep === undefined || n.lladdr === undefined) continue;
          const entry = { netns, mac: n.lladdr, address: n.dst, vtep };
          out.set(keyOf(entry), entry);
        }
      }
      return out;
    },
    plan(desired, actual) {
      return [...desired].filter(([k]) => !actual.has(k)).map(([, e]) => e);
    },
    async apply(changes) {
      const byNetns = new Map<string, string[]>();
      for (const e of changes) {
        const lines = byNetns.get(e.netns) ?? [];
        byNetns.set(e.netns, lines);
        lines.push(`neigh replace ${e.address} lladdr ${e.mac} dev ${VXLAN_DEV} nud permanent`);
      }
      for (const [netns, lines] of byNetns) await ipBatch(netns, lines);
      for (const e of changes)
        await sh([
          'bridge',
          '-n',
          e.netns,
          'fdb',
          'replace',
          e.mac,
          'dev',
          VXLAN_DEV,
          'dst',
          e.vtep,
          'self',
          'permanent',
        ]);
      return { kernelOperations: changes.length * 2 };
    },
  };
}
