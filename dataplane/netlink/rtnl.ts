import { closeSync, openSync } from 'node:fs';
import { createRtNetlink, type RtNetlinkSocket, type rt } from 'netlink';
import {
  AF_BRIDGE,
  AF_INET,
  attr,
  bufferToIpv4,
  bufferToMac,
  cstring,
  emptyIfinfomsg,
  encodeVxlanData,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  ipv4ToBuffer,
  macToBuffer,
  parseCidr,
  u32,
  VETH_INFO_PEER,
  validateIfname,
} from './codec.js';
import { decodeLink, decodeScope } from './decode.js';
import { errnoOf, NetlinkError, wrapNetlink } from './errors.js';
import type { RtnlOps, VxlanPeer } from './ops.js';
import type {
  AddrInfo,
  FdbInfo,
  FdbSpec,
  LinkChange,
  LinkInfo,
  LinkSpec,
  NeighInfo,
  NeighSpec,
  RouteInfo,
  RouteSpec,
} from './types.js';

// Netlink header flags (include/uapi/linux/netlink.h).
const NLM_F_REPLACE = 0x100;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const RT_TABLE_MAIN = 254;
const RTPROT_STATIC = 4;
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Requests in flight at once in a pipelined batch. Bounded: unread ACKs sit in
 * the socket's receive buffer at ~1 KB each (~208 KB by default); 256 in flight
 * overflowed it (ENOBUFS) on the IPVS socket in an emulated guest.
 */
const PIPELINE_DEPTH = 64;

function withNetnsFd<T>(path: string, fn: (fd: number) => Promise<T>): Promise<T> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new NetlinkError('open netns', `cannot open "${path}": ${(err as Error).message}`, undefined, err);
  }
  return fn(fd).finally(() => closeSync(fd));
}

export class Rtnl implements RtnlOps {
  private constructor(private readonly sock: RtNetlinkSocket) {}

  /** Opens an rtnetlink socket in this process's network namespace. */
  static open(): Rtnl {
    const sock = createRtNetlink();
    // A receive error (ENOBUFS) is emitted as an event; unheard, it aborts the
    // process from inside the addon. Requests whose replies were lost time out.
    sock.socket.on('error', () => {});
    return new Rtnl(sock);
  }

  close(): void {
    this.sock.socket.close();
  }

  // The netlink package matches multipart dump replies by arrival, not by
  // sequence number: two dumps in flight on one socket corrupt each other
  // ("Multipart message not terminated properly"). One request at a time.
  private tail: Promise<unknown> = Promise.resolve();

  private req<T>(operation: string, run: () => Promise<T>): Promise<T> {
    const result = this.tail.then(() => wrapNetlink(operation, run));
    this.tail = result.catch(() => undefined);
    return result;
  }

  private opts(flags = 0) {
    return { flags, timeout: REQUEST_TIMEOUT_MS };
  }

  private async indexOf(name: string, operation: string): Promise<number> {
    validateIfname(name, 'dev');
    const msgs = await this.req(`${operation}: lookup link "${name}"`, () =>
      this.sock.getLink({}, { ifname: name }, this.opts()),
    );
    const index = msgs[0]?.data.index;
    if (index === undefined) throw new NetlinkError(operation, `link "${name}" not found in reply`);
    return index;
  }

  private async namesByIndex(): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    for (const l of await this.links()) out.set(l.index, l.name);
    return out;
  }

  async links(): Promise<LinkInfo[]> {
    const msgs = await this.req('dump links', () => this.sock.getLinks(undefined, undefined, this.opts()));
    return msgs.map((m) => decodeLink(m));
  }

  async addLink(spec: LinkSpec): Promise<void> {
    validateIfname(spec.name);
    const op = `add link ${spec.kind} "${spec.name}"`;
    const attrs: Parameters<RtNetlinkSocket['newLink']>[1] = { ifname: spec.name };
    if (spec.mtu !== undefined) attrs.mtu = spec.mtu;
    if (spec.mac !== undefined) attrs.address = macToBuffer(spec.mac);
    const send = (data: Buffer) => {
      attrs.linkinfo = Buffer.concat([
        attr(IFLA_INFO_KIND, cstring(spec.kind)),
        ...(data.length ? [attr(IFLA_INFO_DATA, data)] : []),
      ]);
      return this.req(op, () => this.sock.newLink({}, attrs, this.opts(NLM_F_CREATE | NLM_F_EXCL)));
    };
    switch (spec.kind) {
      case 'bridge':
        await send(Buffer.alloc(0));
        return;
      case 'vxlan':
        if (spec.vxlan === undefined) throw new NetlinkError(op, 'vxlan options are required');
        await send(encodeVxlanData(spec.vxlan));
        return;
      case 'veth': {
        const v = spec.veth;
        if (v === undefined) throw new NetlinkError(op, 'veth options (peerName) are required');
        validateIfname(v.peerName, 'veth.peerName');
        const peer = (fd?: number) =>
          Buffer.concat([
            emptyIfinfomsg(),
            attr(IFLA_IFNAME, cstring(v.peerName)),
            ...(v.peerMtu !== undefined ? [attr(IFLA_MTU, u32(v.peerMtu))] : []),
            ...(v.peerMac !== undefined ? [attr(IFLA_ADDRESS, macToBuffer(v.peerMac, 'veth.peerMac'))] : []),
            ...(fd !== undefined ? [attr(IFLA_NET_NS_FD, u32(fd))] : []),
          ]);
        if (v.peerNetnsPath === undefined) await send(attr(VETH_INFO_PEER, peer()));
        else await withNetnsFd(v.peerNetnsPath, (fd) => send(attr(VETH_INFO_PEER, peer(fd))));
        return;
      }
      default: {
        const kind: never = spec.kind;
        throw new NetlinkError(op, `unknown link kind ${JSON.stringify(kind)}`);
      }
    }
  }

  async setLink(name: string, change: LinkChange): Promise<void> {
    const op = `set link "${name}" ${JSON.stringify(change)}`;
    const index = await this.indexOf(name, op);
    const data: rt.Link = { index };
    if (change.up !== undefined) {
      data.flags = change.up ? { up: true } : {};
      data.change = { up: true };
    }
    const attrs: Parameters<RtNetlinkSocket['setLink']>[1] = {};
    if (change.name !== undefined) attrs.ifname = validateIfname(change.name);
    if (change.mtu !== undefined) attrs.mtu = change.mtu;
    if (change.mac !== undefined) attrs.address = macToBuffer(change.mac);
    if (change.master !== undefined)
      attrs.master = change.master === null ? 0 : await this.indexOf(change.master, op);
    if (change.netnsPath === undefined) {
      await this.req(op, () => this.sock.setLink(data, attrs, this.opts()));
      return;
    }
    await withNetnsFd(change.netnsPath, (fd) => {
      attrs.netNsFd = fd;
      return this.req(op, () => this.sock.setLink(data, attrs, this.opts()));
    });
  }

  async delLink(name: string): Promise<void> {
    const op = `delete link "${name}"`;
    const index = await this.indexOf(name, op);
    await this.req(op, () => this.sock.delLink({ index }, {}, this.opts()));
  }

  async addrs(): Promise<AddrInfo[]> {
    const names = await this.namesByIndex();
    const msgs = await this.req('dump addresses', () =>
      this.sock.getAddresses({ family: AF_INET }, undefined, this.opts()),
    );
    const out: AddrInfo[] = [];
    for (const m of msgs) {
      const local = m.attrs.local ?? m.attrs.address;
      if (m.data.family !== AF_INET || local === undefined || m.data.index === undefined) continue;
      const ifname = names.get(m.data.index);
      if (ifname === undefined) continue;
      out.push({ ifname, address: bufferToIpv4(local), prefixLength: m.data.prefixlen ?? 32 });
    }
    return out;
  }

  private async addrRequest(kind: 'add' | 'delete', dev: string, cidr: string): Promise<void> {
    const op = `${kind} address ${cidr} on "${dev}"`;
    const [ip, len] = parseCidr(cidr, 'address');
    const index = await this.indexOf(dev, op);
    const data = { family: AF_INET, prefixlen: len, index };
    const attrs = { local: ipv4ToBuffer(ip), address: ipv4ToBuffer(ip) };
    if (kind === 'add')
      await this.req(op, () => this.sock.newAddress(data, attrs, this.opts(NLM_F_CREATE | NLM_F_EXCL)));
    else await this.req(op, () => this.sock.delAddress(data, attrs, this.opts()));
  }

  addAddr(dev: string, cidr: string): Promise<void> {
    return this.addrRequest('add', dev, cidr);
  }

  delAddr(dev: string, cidr: string): Promise<void> {
    return this.addrRequest('delete', dev, cidr);
  }

  /** IPv4 routes of the main table. */
  async routes(): Promise<RouteInfo[]> {
    const names = await this.namesByIndex();
    const msgs = await this.req('dump routes', () =>
      this.sock.getRoutes({ family: AF_INET }, undefined, this.opts()),
    );
    const out: RouteInfo[] = [];
    for (const m of msgs) {
      const table = m.attrs.table ?? m.data.table;
      if (table !== RT_TABLE_MAIN || m.data.family !== AF_INET) continue;
      const len = m.data.dstLen ?? 0;
      const r: RouteInfo = {
        dst: len === 0 ? 'default' : `${bufferToIpv4(m.attrs.dst ?? Buffer.alloc(4))}/${len}`,
        scope: decodeScope(m.data.scope),
        protocol: typeof m.data.protocol === 'number' ? m.data.protocol : 0,
      };
      if (m.attrs.gateway !== undefined) r.gateway = bufferToIpv4(m.attrs.gateway);
      if (m.attrs.oif !== undefined) {
        const dev = names.get(m.attrs.oif);
        if (dev !== undefined) r.dev = dev;
      }
      if (m.attrs.prefsrc !== undefined) r.src = bufferToIpv4(m.attrs.prefsrc);
      out.push(r);
    }
    return out;
  }

  private async routeRequest(kind: 'add' | 'delete', spec: RouteSpec): Promise<void> {
    const op = `${kind} route ${JSON.stringify(spec)}`;
    const [ip, len] = parseCidr(spec.dst);
    const data: rt.Route = {
      family: AF_INET,
      dstLen: len,
      table: RT_TABLE_MAIN,
      protocol: RTPROT_STATIC,
      scope: spec.gateway === undefined ? 'LINK' : 'UNIVERSE',
      type: 'UNICAST',
    };
    const attrs: rt.RouteAttrs = {};
    if (len > 0) attrs.dst = ipv4ToBuffer(ip, 'dst');
    if (spec.gateway !== undefined) attrs.gateway = ipv4ToBuffer(spec.gateway, 'gateway');
    if (spec.src !== undefined) attrs.prefsrc = ipv4ToBuffer(spec.src, 'src');
    if (spec.dev !== undefined) attrs.oif = await this.indexOf(spec.dev, op);
    if (kind === 'add')
      await this.req(op, () => this.sock.newRoute(data, attrs, this.opts(NLM_F_CREATE | NLM_F_EXCL)));
    else await this.req(op, () => this.sock.delRoute(data, attrs, this.opts()));
  }

  addRoute(spec: RouteSpec): Promise<void> {
    return this.routeRequest('add', spec);
  }

  delRoute(spec: RouteSpec): Promise<void> {
    return this.routeRequest('delete', spec);
  }

  async neighs(): Promise<NeighInfo[]> {
    const names = await this.namesByIndex();
    const msgs = await this.req('dump neighbours', () =>
      this.sock.getNeighbors({ family: AF_INET }, undefined, this.opts()),
    );
    const out: NeighInfo[] = [];
    for (const m of msgs) {
      const dev = m.data.ifindex === undefined ? undefined : names.get(m.data.ifindex);
      // NOARP entries are the kernel's own (multicast, broadcast); `ip neigh` hides them too.
      if (m.data.state?.noarp === true) continue;
      if (dev === undefined || m.attrs.dst === undefined || m.attrs.lladdr === undefined) continue;
      out.push({
        dev,
        address: bufferToIpv4(m.attrs.dst),
        mac: bufferToMac(m.attrs.lladdr),
        permanent: m.data.state?.permanent === true,
      });
    }
    return out;
  }

  private async neighRequest(kind: 'replace' | 'delete', spec: NeighSpec): Promise<void> {
    const op = `${kind} neighbour ${spec.address} lladdr ${spec.mac} on "${spec.dev}"`;
    const ifindex = await this.indexOf(spec.dev, op);
    const data: rt.Neighbor = { family: AF_INET, ifindex, state: { permanent: true } };
    const attrs = { dst: ipv4ToBuffer(spec.address), lladdr: macToBuffer(spec.mac) };
    if (kind === 'replace')
      await this.req(op, () => this.sock.newNeighbor(data, attrs, this.opts(NLM_F_CREATE | NLM_F_REPLACE)));
    else await this.req(op, () => this.sock.delNeighbor(data, attrs, this.opts()));
  }

  replaceNeigh(spec: NeighSpec): Promise<void> {
    return this.neighRequest('replace', spec);
  }

  delNeigh(spec: NeighSpec): Promise<void> {
    return this.neighRequest('delete', spec);
  }

  async fdb(): Promise<FdbInfo[]> {
    const names = await this.namesByIndex();
    const msgs = await this.req('dump fdb', () =>
      this.sock.getNeighbors({ family: AF_BRIDGE }, undefined, this.opts()),
    );
    const out: FdbInfo[] = [];
    for (const m of msgs) {
      const dev = m.data.ifindex === undefined ? undefined : names.get(m.data.ifindex);
      if (dev === undefined || m.attrs.lladdr === undefined) continue;
      const e: FdbInfo = {
        dev,
        mac: bufferToMac(m.attrs.lladdr),
        permanent: m.data.state?.permanent === true || m.data.state?.noarp === true,
        self: m.data.flags?.self === true,
      };
      if (m.attrs.dst !== undefined && m.attrs.dst.length === 4) e.dst = bufferToIpv4(m.attrs.dst);
      out.push(e);
    }
    return out;
  }

  private async fdbRequest(kind: 'replace' | 'delete', spec: FdbSpec): Promise<void> {
    const op = `${kind} fdb ${spec.mac} dst ${spec.dst} on "${spec.dev}"`;
    const ifindex = await this.indexOf(spec.dev, op);
    const data: rt.Neighbor = {
      family: AF_BRIDGE,
      ifindex,
      state: { permanent: true },
      flags: { self: true },
    };
    const attrs = { lladdr: macToBuffer(spec.mac), dst: ipv4ToBuffer(spec.dst, 'dst') };
    if (kind === 'replace')
      await this.req(op, () => this.sock.newNeighbor(data, attrs, this.opts(NLM_F_CREATE | NLM_F_REPLACE)));
    else await this.req(op, () => this.sock.delNeighbor(data, attrs, this.opts()));
  }

  replaceFdb(spec: FdbSpec): Promise<void> {
    return this.fdbRequest('replace', spec);
  }

  delFdb(spec: FdbSpec): Promise<void> {
    return this.fdbRequest('delete', spec);
  }

  replaceVxlanPeers(dev: string, peers: VxlanPeer[]): Promise<void> {
    return this.vxlanPeers('replace', dev, peers);
  }

  delVxlanPeers(dev: string, peers: VxlanPeer[]): Promise<void> {
    return this.vxlanPeers('delete', dev, peers);
  }

  /**
   * One ifindex lookup, then two requests per peer sent PIPELINE_DEPTH at a time in one
   * slot of the request queue: no dump runs meanwhile, and ACKs are matched by sequence.
   */
  private async vxlanPeers(kind: 'replace' | 'delete', dev: string, peers: VxlanPeer[]): Promise<void> {
    if (peers.length === 0) return;
    const op = `${kind} ${peers.length} vxlan peers on "${dev}"`;
    const ifindex = await this.indexOf(dev, op);
    const requests: { what: string; send: () => Promise<unknown> }[] = [];
    for (const p of peers) {
      const mac = macToBuffer(p.mac);
      const fdbData: rt.Neighbor = {
        family: AF_BRIDGE,
        ifindex,
        state: { permanent: true },
        flags: { self: true },
      };
      const fdbAttrs = { lladdr: mac, dst: ipv4ToBuffer(p.vtep, 'vtep') };
      const neighData: rt.Neighbor = { family: AF_INET, ifindex, state: { permanent: true } };
      const neighAttrs = { dst: ipv4ToBuffer(p.address), lladdr: mac };
      if (kind === 'replace') {
        const flags = this.opts(NLM_F_CREATE | NLM_F_REPLACE);
        requests.push({
          what: `fdb ${p.mac} dst ${p.vtep}`,
          send: () => this.sock.newNeighbor(fdbData, fdbAttrs, flags),
        });
        requests.push({
          what: `neighbour ${p.address}`,
          send: () => this.sock.newNeighbor(neighData, neighAttrs, flags),
        });
      } else {
        requests.push({
          what: `neighbour ${p.address}`,
          send: () => this.sock.delNeighbor(neighData, neighAttrs, this.opts()),
        });
        requests.push({
          what: `fdb ${p.mac} dst ${p.vtep}`,
          send: () => this.sock.delNeighbor(fdbData, fdbAttrs, this.opts()),
        });
      }
    }
    await this.req(op, async () => {
      for (let i = 0; i < requests.length; i += PIPELINE_DEPTH) {
        const chunk = requests.slice(i, i + PIPELINE_DEPTH);
        const results = await Promise.allSettled(chunk.map((r) => r.send()));
        for (const [j, r] of results.entries()) {
          if (r.status === 'fulfilled') continue;
          const errno = errnoOf(r.reason);
          if (kind === 'delete' && (errno === 'ENOENT' || errno === 'ESRCH')) continue;
          await wrapNetlink(`${op}: ${chunk[j]?.what}`, () => Promise.reject(r.reason));
        }
      }
    });
  }
}

export { decodeLink } from './decode.js';
export { RTNL_METHODS, type RtnlOps, type VxlanPeer } from './ops.js';
