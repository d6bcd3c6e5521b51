import { subsystemLogger } from '../../src/common/logger.js';
import { errnoOf } from '../netlink/errors.js';
import { helperRtnl } from '../netlink/remote.js';
import type { RtnlOps } from '../netlink/rtnl.js';
import { execOrThrow, type HostAccess } from '../netns/host.js';
import { createNetns, deleteNetns, listNetns, netnsPath } from '../netns/netns.js';
import type { NetnsHelperPool } from '../netns/pool.js';
import type { Programmer } from '../reconciler/reconciler.js';
import {
  desiredOverlay,
  emptyOverlayModel,
  entryKey,
  type OverlayModel,
  type OverlayNetwork,
  type OverlayPeerEntry,
} from './model.js';
import {
  BRIDGE_IF,
  hostLinkName,
  NETWORK_HOST_IF,
  VXLAN_IF,
  validateHostPrefix,
  vxlanStagingName,
} from './names.js';
import { type OverlayChange, planOverlay } from './plan.js';

const log = subsystemLogger('overlay');
export const EGRESS_TABLE = 'meshd_egress';

export interface OverlayContext {
  hostPrefix: string;
  host: HostAccess;
  helpers: NetnsHelperPool;
}

/** The reconciler's Programmer for the overlay of one node (describe always present). */
export type OverlayProgrammer = Programmer<OverlayModel, OverlayChange> & {
  readonly name: 'overlay';
  describe(model: OverlayModel): unknown;
};

async function ignoreMissing(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    const errno = errnoOf((err as { cause?: unknown }).cause) ?? errnoOf(err);
    if (errno === 'ENODEV' || errno === 'ENOENT' || errno === 'ESRCH' || /ENODEV|ENOENT/.test(String(err)))
      return;
    throw err;
  }
}

export function overlayProgrammer(ctx: OverlayContext): OverlayProgrammer {
  validateHostPrefix(ctx.hostPrefix);
  const nsOps = async (netns: string): Promise<RtnlOps> => helperRtnl(await ctx.helpers.get(netns));
  let ops = 0;
  const count = <T>(p: Promise<T>): Promise<T> => {
    ops++;
    return p;
  };

  async function dumpNetwork(
    netns: string,
    hostLinks: Set<string>,
    hostRoutes: Map<string, string>,
    model: OverlayModel,
  ) {
    const nl = await nsOps(netns);
    const links = await nl.links();
    const vx = links.find((l) => l.name === VXLAN_IF);
    const br = links.find((l) => l.name === BRIDGE_IF);
    const hl = links.find((l) => l.name === NETWORK_HOST_IF);
    const vni = vx?.vxlan?.vni ?? 0;
    const healthy =
      vx !== undefined &&
      br !== undefined &&
      hl !== undefined &&
      vx.up &&
      br.up &&
      hl.up &&
      vx.masterIndex === br.index;
    const addresses = (await nl.addrs())
      .filter((a) => a.ifname === BRIDGE_IF)
      .map((a) => `${a.address}/${a.prefixLength}`)
      .sort();
    const hostIf = hostLinkName(vni);
    const network: OverlayNetwork = {
      netns,
      // An unhealthy network gets VNI 0: its signature never matches, so the planner rebuilds it.
      vni: healthy ? vni : 0,
      port: vx?.vxlan?.port ?? 0,
      local: vx?.vxlan?.local ?? '',
      mtu: br?.mtu ?? 0,
      bridgeMac: br?.mac ?? '',
      addresses,
      subnet: hostLinks.has(hostIf) ? (hostRoutes.get(hostIf) ?? '') : '',
    };
    model.networks.set(netns, network);
    if (vx === undefined) return;
    const vtepOf = new Map<string, string>();
    for (const f of await nl.fdb())
      if (f.dev === VXLAN_IF && f.self && f.dst !== undefined) vtepOf.set(f.mac, f.dst);
    for (const n of await nl.neighs()) {
      if (n.dev !== VXLAN_IF || !n.permanent) continue;
      const entry: OverlayPeerEntry = {
        netns,
        address: n.address,
        mac: n.mac,
        vtep: vtepOf.get(n.mac) ?? '',
      };
      model.entries.set(entryKey(entry), entry);
    }
  }

  async function dumpEgress(): Promise<string[]> {
    const r = await ctx.host.exec(['nft', '-j', 'list', 'set', 'ip', EGRESS_TABLE, 'subnets']);
    if (r.code !== 0) return [];
    const parsed = JSON.parse(r.stdout) as { nftables: { set?: { elem?: unknown[] } }[] };
    const elems = parsed.nftables.find((x) => x.set !== undefined)?.set?.elem ?? [];
    const out: string[] = [];
    for (const e of elems) {
      const p = (e as { prefix?: { addr: string; len: number } }).prefix;
      if (p !== undefined) out.push(`${p.addr}/${p.len}`);
    }
    return out.sort();
  }

  async function createNetwork(n: OverlayNetwork): Promise<void> {
    const host = ctx.host.rtnl;
    const staging = vxlanStagingName(n.vni);
    const hostIf = hostLinkName(n.vni);
    await ctx.helpers.stop(n.netns);
    // Leftovers of a half-built or dying namespace would make the creates below fail with EEXIST.
    const hostLinks = new Set((await count(host.links())).map((l) => l.name));
    if (hostLinks.has(staging)) await count(host.delLink(staging));
    if (hostLinks.has(hostIf)) await count(host.delLink(hostIf));
    await createNetns(n.netns);
    const nl = await nsOps(n.netns);
    // Created in the host namespace so its UDP socket (port n.port) lives there, then moved.
    await count(
      host.addLink({
        name: staging,
        kind: 'vxlan',
        mtu: n.mtu,
        vxlan: { vni: n.vni, port: n.port, local: n.local, learning: false, arpProxy: true },
      }),
    );
    await count(host.setLink(staging, { netnsPath: netnsPath(n.netns) }));
    await count(nl.setLink(staging, { name: VXLAN_IF }));
    await count(nl.addLink({ name: BRIDGE_IF, kind: 'bridge', mtu: n.mtu, mac: n.bridgeMac }));
    await count(nl.setLink(VXLAN_IF, { master: BRIDGE_IF, up: true }));
    await count(nl.setLink(BRIDGE_IF, { up: true }));
    for (const cidr of n.addresses) await count(nl.addAddr(BRIDGE_IF, cidr));
    // The host link: no addresses; proxy ARP on both ends answers for what each side routes.
    await count(
      host.addLink({
        name: hostIf,
        kind: 'veth',
        veth: { peerName: NETWORK_HOST_IF, peerNetnsPath: netnsPath(n.netns) },
      }),
    );
    await count(host.setLink(hostIf, { up: true }));
    await count(nl.setLink(NETWORK_HOST_IF, { up: true }));
    await ctx.host.sysctl(`net.ipv4.conf.${hostIf}.proxy_arp`, '1');
    await ctx.host.sysctl('net.ipv4.ip_forward', '1');
    const helper = await ctx.helpers.get(n.netns);
    await helper.sysctl('net.ipv4.ip_forward', '1');
    await helper.sysctl(`net.ipv4.conf.${NETWORK_HOST_IF}.proxy_arp`, '1');
    await count(host.addRoute({ dst: n.subnet, dev: hostIf }));
    await count(nl.addRoute({ dst: 'default', dev: NETWORK_HOST_IF }));
  }

  async function deleteNetwork(netns: string, vni: number | null): Promise<void> {
    // Explicit deletes first: namespace teardown is asynchronous in the kernel, and a
    // vxlan with the same VNI/port (or the host link's name) could not be recreated meanwhile.
    if (vni !== null) {
      await ignoreMissing(async () => count((await nsOps(netns)).delLink(VXLAN_IF)));
      await ignoreMissing(() => count(ctx.host.rtnl.delLink(hostLinkName(vni))));
    }
    await ctx.helpers.stop(netns);
    await deleteNetns(netns);
  }

  async function setEgress(subnets: string[]): Promise<void> {
    const lines = [`table ip ${EGRESS_TABLE}`, `delete table ip ${EGRESS_TABLE}`];
    if (subnets.length > 0) {
      lines.push(
        `table ip ${EGRESS_TABLE} {`,
        `  set subnets { type ipv4_addr; flags interval; elements = { ${subnets.join(', ')} } }`,
        '  chain postrouting {',
        '    type nat hook postrouting priority srcnat + 10; policy accept;',
        // Task traffic leaving through anything but a network's own host link goes out as the host.
        '    ip saddr @subnets oifname != "mh*" masquerade',
        '  }',
        '}',
      );
    }
    ops++;
    await execOrThrow(ctx.host, ['nft', '-f', '-'], `${lines.join('\n')}\n`);
  }

  return {
    name: 'overlay',
    desired: (state) => desiredOverlay(state, { hostPrefix: ctx.hostPrefix }),
    async dump() {
      const model = emptyOverlayModel();
      const hostLinks = new Set((await ctx.host.rtnl.links()).map((l) => l.name));
      const hostRoutes = new Map<string, string>();
      for (const r of await ctx.host.rtnl.routes())
        if (r.dev?.startsWith('mh') && r.dst !== 'default') hostRoutes.set(r.dev, r.dst);
      for (const netns of listNetns(`${ctx.hostPrefix}n`))
        await dumpNetwork(netns, hostLinks, hostRoutes, model);
      model.egressSubnets = await dumpEgress();
      return model;
    },
    plan: planOverlay,
    async apply(changes) {
      ops = 0;
      // Entries are written in one pipelined batch per network and kind, after the
      // network changes they depend on; order inside a batch does not matter.
      const setEntries = new Map<string, OverlayPeerEntry[]>();
      const deleteEntries = new Map<string, OverlayPeerEntry[]>();
      const group = (m: Map<string, OverlayPeerEntry[]>, e: OverlayPeerEntry) => {
        const list = m.get(e.netns) ?? [];
        list.push(e);
        m.set(e.netns, list);
      };
      for (const c of changes) {
        switch (c.type) {
          case 'create-network':
            await createNetwork(c.network);
            break;
          case 'delete-network':
            await deleteNetwork(c.netns, c.vni);
            break;
          case 'set-bridge': {
            const nl = await nsOps(c.network.netns);
            await count(nl.setLink(BRIDGE_IF, { mac: c.network.bridgeMac }));
            for (const cidr of c.removeAddresses)
              await ignoreMissing(() => count(nl.delAddr(BRIDGE_IF, cidr)));
            for (const cidr of c.addAddresses) await count(nl.addAddr(BRIDGE_IF, cidr));
            break;
          }
          case 'set-entry':
            group(setEntries, c.entry);
            break;
          case 'delete-entry':
            group(deleteEntries, c.entry);
            break;
          case 'set-egress':
            await setEgress(c.subnets);
            break;
          default: {
            const never: never = c;
            throw new Error(`unknown overlay change ${JSON.stringify(never)}`);
          }
        }
      }
      const peers = (entries: OverlayPeerEntry[]) =>
        entries.filter((e) => e.vtep !== '').map((e) => ({ address: e.address, mac: e.mac, vtep: e.vtep }));
      for (const [netns, entries] of deleteEntries) {
        ops += entries.length * 2;
        const nl = await nsOps(netns);
        // A neighbour whose FDB half is gone (vtep unknown) is removed on its own.
        for (const e of entries.filter((x) => x.vtep === '')) {
          await ignoreMissing(() => nl.delNeigh({ dev: VXLAN_IF, address: e.address, mac: e.mac }));
        }
        await nl.delVxlanPeers(VXLAN_IF, peers(entries));
      }
      for (const [netns, entries] of setEntries) {
        ops += entries.length * 2;
        await (await nsOps(netns)).replaceVxlanPeers(VXLAN_IF, peers(entries));
      }
      if (changes.length > 0)
        log.debug({ changes: changes.length, kernelOperations: ops }, 'overlay applied');
      return { kernelOperations: ops };
    },
    describe: (model) => ({
      networks: [...model.networks.values()],
      entries: [...model.entries.values()],
      egressSubnets: model.egressSubnets,
    }),
  };
}
