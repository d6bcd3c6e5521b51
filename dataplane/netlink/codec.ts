import { ValidationError } from '../../src/common/errors.js';
import type { VxlanOptions } from './types.js';

// Attribute numbers from include/uapi/linux/if_link.h and veth.h.
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const VETH_INFO_PEER = 1;
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_NET_NS_FD = 28;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PROXY = 11;
const IFLA_VXLAN_PORT = 15;
export const IFINFOMSG_LENGTH = 16;
export const AF_INET = 2;
export const AF_BRIDGE = 7;

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

export function validateIfname(name: string, field = 'name'): string {
  if (!IFNAME.test(name)) {
    throw new ValidationError(
      field,
      `${field}: link name must be 1..15 of [A-Za-z0-9_.-] (IFNAMSIZ), got "${name}"`,
    );
  }
  return name;
}

export function ipv4ToBuffer(ip: string, field = 'address'): Buffer {
  const m = IPV4.exec(ip);
  const octets = m?.slice(1).map(Number);
  if (octets === undefined || octets.some((o) => o > 255)) {
    throw new ValidationError(field, `${field}: expected an IPv4 address like 10.0.0.1, got "${ip}"`);
  }
  return Buffer.from(octets);
}

export function bufferToIpv4(b: Buffer): string {
  return [...b.subarray(0, 4)].join('.');
}

export function macToBuffer(mac: string, field = 'mac'): Buffer {
  const lower = mac.toLowerCase();
  if (!MAC.test(lower))
    throw new ValidationError(field, `${field}: expected a MAC like 02:42:0a:00:00:02, got "${mac}"`);
  return Buffer.from(lower.split(':').map((x) => Number.parseInt(x, 16)));
}

export function bufferToMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** "10.0.0.0/24" → [address, prefix length]; "default" → ["0.0.0.0", 0]. */
export function parseCidr(cidr: string, field = 'dst'): [string, number] {
  if (cidr === 'default') return ['0.0.0.0', 0];
  const [ip, len, extra] = cidr.split('/');
  const n = Number(len ?? '32');
  if (ip === undefined || extra !== undefined || !Number.isInteger(n) || n < 0 || n > 32) {
    throw new ValidationError(field, `${field}: expected CIDR like 10.0.0.0/24 or "default", got "${cidr}"`);
  }
  ipv4ToBuffer(ip, field);
  return [ip, n];
}

/** One netlink attribute (length, type, payload, padding to 4 bytes). */
export function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

export function cstring(s: string): Buffer {
  return Buffer.concat([Buffer.from(s), Buffer.alloc(1)]);
}

/** Splits a buffer of attributes into type → payload (last one wins; nested flag bits masked). */
export function parseAttrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > buf.length) break;
    out.set(type, buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
  return out;
}

export function encodeVxlanData(o: VxlanOptions): Buffer {
  if (!Number.isInteger(o.vni) || o.vni < 1 || o.vni > 16_777_215) {
    throw new ValidationError('vxlan.vni', `vxlan.vni must be an integer 1..16777215, got ${o.vni}`);
  }
  const port = o.port ?? 4789;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ValidationError('vxlan.port', `vxlan.port must be an integer 1..65535, got ${port}`);
  }
  const portBuf = Buffer.alloc(2);
  portBuf.writeUInt16BE(port, 0);
  const parts = [
    attr(IFLA_VXLAN_ID, u32(o.vni)),
    attr(IFLA_VXLAN_PORT, portBuf),
    attr(IFLA_VXLAN_LEARNING, Buffer.from([o.learning === true ? 1 : 0])),
    attr(IFLA_VXLAN_PROXY, Buffer.from([o.arpProxy === true ? 1 : 0])),
  ];
  if (o.local !== undefined) parts.push(attr(IFLA_VXLAN_LOCAL, ipv4ToBuffer(o.local, 'vxlan.local')));
  return Buffer.concat(parts);
}

export interface VxlanInfo {
  vni: number;
  port: number;
  local?: string;
  learning: boolean;
  arpProxy: boolean;
}

export function decodeVxlanData(data: Buffer): VxlanInfo {
  const a = parseAttrs(data);
  const proxy = a.get(IFLA_VXLAN_PROXY);
  const id = a.get(IFLA_VXLAN_ID);
  const port = a.get(IFLA_VXLAN_PORT);
  const local = a.get(IFLA_VXLAN_LOCAL);
  const learning = a.get(IFLA_VXLAN_LEARNING);
  const out: VxlanInfo = {
    vni: id !== undefined && id.length >= 4 ? id.readUInt32LE(0) : 0,
    port: port !== undefined && port.length >= 2 ? port.readUInt16BE(0) : 0,
    learning: learning !== undefined && learning.length >= 1 ? learning[0] === 1 : false,
    arpProxy: proxy !== undefined && proxy.length >= 1 ? proxy[0] === 1 : false,
  };
  if (local !== undefined && local.length === 4) out.local = bufferToIpv4(local);
  return out;
}

/** A struct ifinfomsg with family AF_UNSPEC and the rest zero (the veth peer header). */
export function emptyIfinfomsg(): Buffer {
  return Buffer.alloc(IFINFOMSG_LENGTH);
}
