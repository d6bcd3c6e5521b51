import { isIPv4 } from 'node:net';
import { ValidationError } from '../../../src/common/errors.js';
import {
  attr,
  cstring,
  nested,
  parseAttrs,
  readCounter,
  readCString,
  readU16,
  readU16be,
  readU32,
  readU32be,
  u16,
  u16be,
  u32,
  u32be,
} from './attrs.js';
import {
  AF_INET,
  CmdAttr,
  DestAttr,
  FWD_MASK,
  FwdMethod,
  INET_ADDR_BYTES,
  InfoAttr,
  IPPROTO,
  PE_NAME_MAX_BYTES,
  SCHED_NAME_MAX_BYTES,
  StatsAttr,
  SvcAttr,
  SvcFlag,
} from './constants.js';
import type {
  IpvsDestination,
  IpvsForward,
  IpvsInfo,
  IpvsProtocol,
  IpvsService,
  IpvsServiceKey,
  IpvsStats,
  IpvsTimeouts,
} from './types.js';

/**
 * Pure encoders/decoders for the payload (after the genl header) of IPVS
 * generic-netlink messages. IPv4 only for now: the data-plane contract carries
 * IPv4 addresses.
 */

const NETMASK_ONE_CLIENT = 0xffffffff;

function encodeAddress(address: string, field: string): Buffer {
  if (!isIPv4(address))
    throw new ValidationError(field, `${field}: expected an IPv4 address, got "${address}"`);
  const out = Buffer.alloc(INET_ADDR_BYTES);
  address.split('.').forEach((octet, i) => {
    out[i] = Number(octet);
  });
  return out;
}

function decodeAddress(buf: Buffer | undefined, field: string): string {
  if (buf === undefined || buf.length < 4) {
    throw new ValidationError(
      field,
      `${field}: expected an address of at least 4 bytes, got ${buf?.length ?? 0}`,
    );
  }
  return `${buf[0]}.${buf[1]}.${buf[2]}.${buf[3]}`;
}

function checkPort(port: number, field: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ValidationError(field, `${field}: port must be an integer 0..65535, got ${port}`);
  }
}

function checkU32(value: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new ValidationError(field, `${field}: must be an integer 0..4294967295, got ${value}`);
  }
}

function protocolName(number: number): IpvsProtocol {
  for (const [name, value] of Object.entries(IPPROTO)) if (value === number) return name as IpvsProtocol;
  throw new ValidationError(
    'service.protocol',
    `service.protocol: unknown IP protocol ${number} (tcp, udp, sctp)`,
  );
}

/** The attributes that name a service (enough for DEL_SERVICE and GET_DEST). */
function serviceKeyAttrs(key: IpvsServiceKey): Buffer[] {
  const out = [attr(SvcAttr.AF, u16(AF_INET))];
  if (key.kind === 'fwmark') {
    checkU32(key.fwmark, 'service.fwmark');
    if (key.fwmark === 0)
      throw new ValidationError('service.fwmark', 'service.fwmark: must be 1..4294967295, got 0');
    out.push(attr(SvcAttr.FWMARK, u32(key.fwmark)));
    return out;
  }
  checkPort(key.port, 'service.port');
  out.push(
    attr(SvcAttr.PROTOCOL, u16(IPPROTO[key.protocol])),
    attr(SvcAttr.ADDR, encodeAddress(key.address, 'service.address')),
    attr(SvcAttr.PORT, u16be(key.port)),
  );
  return out;
}

export function encodeServiceKey(key: IpvsServiceKey): Buffer {
  return nested(CmdAttr.SERVICE, serviceKeyAttrs(key));
}

function serviceFlags(service: IpvsService): number {
  let flags = 0;
  if (service.persistenceS > 0) flags |= SvcFlag.PERSISTENT;
  if (service.onePacket) flags |= SvcFlag.ONEPACKET;
  if (service.schedFlags.flag1) flags |= SvcFlag.SCHED1;
  if (service.schedFlags.flag2) flags |= SvcFlag.SCHED2;
  if (service.schedFlags.flag3) flags |= SvcFlag.SCHED3;
  return flags;
}

/** A whole service (NEW_SERVICE / SET_SERVICE need scheduler, flags, timeout and netmask). */
export function encodeService(service: IpvsService): Buffer {
  const sched = Buffer.from(service.scheduler, 'utf8');
  if (sched.length === 0 || sched.length >= SCHED_NAME_MAX_BYTES || !/^[a-z0-9]+$/.test(service.scheduler)) {
    throw new ValidationError(
      'service.scheduler',
      `service.scheduler: expected a scheduler name of 1..15 of [a-z0-9] (rr, wrr, lc, sh, mh), got "${service.scheduler}"`,
    );
  }
  checkU32(service.persistenceS, 'service.persistenceS');
  checkU32(service.netmask, 'service.netmask');
  const flags = Buffer.concat([u32(serviceFlags(service)), u32(0xffffffff)]);
  const children = [
    ...serviceKeyAttrs(service.key),
    attr(SvcAttr.SCHED_NAME, cstring(service.scheduler)),
    attr(SvcAttr.FLAGS, flags),
    attr(SvcAttr.TIMEOUT, u32(service.persistenceS)),
    // The kernel keeps the netmask in network byte order (__be32).
    attr(SvcAttr.NETMASK, u32be(service.netmask)),
  ];
  if (service.persistenceEngine !== '') {
    if (Buffer.byteLength(service.persistenceEngine) >= PE_NAME_MAX_BYTES) {
      throw new ValidationError('service.persistenceEngine', 'service.persistenceEngine: at most 31 bytes');
    }
    children.push(attr(SvcAttr.PE_NAME, cstring(service.persistenceEngine)));
  }
  return nested(CmdAttr.SERVICE, children);
}

function decodeStats(buf: Buffer | undefined): IpvsStats | undefined {
  if (buf === undefined) return undefined;
  const a = parseAttrs(buf, 'stats');
  const n = (type: number): number => (a.has(type) ? readCounter(a.get(type), 'stats') : 0);
  return {
    conns: n(StatsAttr.CONNS),
    inPkts: n(StatsAttr.INPKTS),
    outPkts: n(StatsAttr.OUTPKTS),
    inBytes: n(StatsAttr.INBYTES),
    outBytes: n(StatsAttr.OUTBYTES),
    cps: n(StatsAttr.CPS),
    inPps: n(StatsAttr.INPPS),
    outPps: n(StatsAttr.OUTPPS),
    inBps: n(StatsAttr.INBPS),
    outBps: n(StatsAttr.OUTBPS),
  };
}

/** One service from a GET_SERVICE reply payload (top-level attributes). */
export function decodeService(payload: Buffer): IpvsService {
  const top = parseAttrs(payload, 'reply');
  const nestedSvc = top.get(CmdAttr.SERVICE);
  if (nestedSvc === undefined)
    throw new ValidationError('reply.service', 'reply.service: no service attribute');
  const a = parseAttrs(nestedSvc, 'service');
  const af = readU16(a.get(SvcAttr.AF), 'service.af');
  if (af !== AF_INET)
    throw new ValidationError('service.af', `service.af: only AF_INET (2) is supported, got ${af}`);
  const key: IpvsServiceKey =
    a.has(SvcAttr.FWMARK) && readU32(a.get(SvcAttr.FWMARK), 'service.fwmark') !== 0
      ? { kind: 'fwmark', fwmark: readU32(a.get(SvcAttr.FWMARK), 'service.fwmark') }
      : {
          kind: 'inet',
          protocol: protocolName(readU16(a.get(SvcAttr.PROTOCOL), 'service.protocol')),
          address: decodeAddress(a.get(SvcAttr.ADDR), 'service.address'),
          port: readU16be(a.get(SvcAttr.PORT), 'service.port'),
        };
  const flagsBuf = a.get(SvcAttr.FLAGS);
  const flags = flagsBuf === undefined ? 0 : readU32(flagsBuf, 'service.flags');
  const stats = decodeStats(a.get(SvcAttr.STATS64) ?? a.get(SvcAttr.STATS));
  const service: IpvsService = {
    key,
    scheduler: readCString(a.get(SvcAttr.SCHED_NAME), 'service.scheduler'),
    schedFlags: {
      flag1: (flags & SvcFlag.SCHED1) !== 0,
      flag2: (flags & SvcFlag.SCHED2) !== 0,
      flag3: (flags & SvcFlag.SCHED3) !== 0,
    },
    persistenceS: (flags & SvcFlag.PERSISTENT) !== 0 ? readU32(a.get(SvcAttr.TIMEOUT), 'service.timeout') : 0,
    netmask: a.has(SvcAttr.NETMASK)
      ? readU32be(a.get(SvcAttr.NETMASK), 'service.netmask')
      : NETMASK_ONE_CLIENT,
    onePacket: (flags & SvcFlag.ONEPACKET) !== 0,
    persistenceEngine: a.has(SvcAttr.PE_NAME) ? readCString(a.get(SvcAttr.PE_NAME), 'service.pe') : '',
  };
  if (stats !== undefined) service.stats = stats;
  return service;
}

const FORWARD_CODES: Record<IpvsForward, number> = {
  masq: FwdMethod.MASQ,
  local: FwdMethod.LOCALNODE,
  tunnel: FwdMethod.TUNNEL,
  route: FwdMethod.DROUTE,
  bypass: FwdMethod.BYPASS,
};

function forwardName(code: number): IpvsForward {
  for (const [name, value] of Object.entries(FORWARD_CODES))
    if (value === (code & FWD_MASK)) return name as IpvsForward;
  throw new ValidationError('destination.forward', `destination.forward: unknown method ${code}`);
}

/** A destination's identity (DEL_DEST needs only address and port). */
export function encodeDestinationKey(address: string, port: number): Buffer {
  checkPort(port, 'destination.port');
  return nested(CmdAttr.DEST, [
    attr(DestAttr.ADDR_FAMILY, u16(AF_INET)),
    attr(DestAttr.ADDR, encodeAddress(address, 'destination.address')),
    attr(DestAttr.PORT, u16be(port)),
  ]);
}

/** A whole destination (NEW_DEST / SET_DEST). */
export function encodeDestination(dest: IpvsDestination): Buffer {
  checkPort(dest.port, 'destination.port');
  for (const [field, value] of [
    ['destination.weight', dest.weight],
    ['destination.upperThreshold', dest.upperThreshold],
    ['destination.lowerThreshold', dest.lowerThreshold],
  ] as const) {
    checkU32(value, field);
  }
  // The kernel answers ERANGE otherwise; say which field instead.
  if (dest.lowerThreshold > dest.upperThreshold) {
    throw new ValidationError(
      'destination.lowerThreshold',
      `destination.lowerThreshold: must be <= upperThreshold (${dest.upperThreshold}), got ${dest.lowerThreshold}`,
    );
  }
  if (dest.weight > 0x7fffffff) {
    throw new ValidationError(
      'destination.weight',
      `destination.weight: must be 0..2147483647, got ${dest.weight}`,
    );
  }
  return nested(CmdAttr.DEST, [
    attr(DestAttr.ADDR_FAMILY, u16(AF_INET)),
    attr(DestAttr.ADDR, encodeAddress(dest.address, 'destination.address')),
    attr(DestAttr.PORT, u16be(dest.port)),
    attr(DestAttr.FWD_METHOD, u32(FORWARD_CODES[dest.forward])),
    attr(DestAttr.WEIGHT, u32(dest.weight)),
    attr(DestAttr.U_THRESH, u32(dest.upperThreshold)),
    attr(DestAttr.L_THRESH, u32(dest.lowerThreshold)),
  ]);
}

/** One destination from a GET_DEST reply payload. */
export function decodeDestination(payload: Buffer): IpvsDestination {
  const top = parseAttrs(payload, 'reply');
  const nestedDest = top.get(CmdAttr.DEST);
  if (nestedDest === undefined)
    throw new ValidationError('reply.dest', 'reply.dest: no destination attribute');
  const a = parseAttrs(nestedDest, 'destination');
  const opt = (type: number, field: string): number => (a.has(type) ? readU32(a.get(type), field) : 0);
  const dest: IpvsDestination = {
    address: decodeAddress(a.get(DestAttr.ADDR), 'destination.address'),
    port: readU16be(a.get(DestAttr.PORT), 'destination.port'),
    forward: forwardName(readU32(a.get(DestAttr.FWD_METHOD), 'destination.forward')),
    weight: readU32(a.get(DestAttr.WEIGHT), 'destination.weight'),
    upperThreshold: opt(DestAttr.U_THRESH, 'destination.upperThreshold'),
    lowerThreshold: opt(DestAttr.L_THRESH, 'destination.lowerThreshold'),
    activeConns: opt(DestAttr.ACTIVE_CONNS, 'destination.activeConns'),
    inactiveConns: opt(DestAttr.INACT_CONNS, 'destination.inactiveConns'),
    persistConns: opt(DestAttr.PERSIST_CONNS, 'destination.persistConns'),
  };
  const stats = decodeStats(a.get(DestAttr.STATS64) ?? a.get(DestAttr.STATS));
  if (stats !== undefined) dest.stats = stats;
  return dest;
}

/** SET_CONFIG payload; a 0 leaves that timeout as it is (the kernel skips zeros). */
export function encodeTimeouts(timeouts: IpvsTimeouts): Buffer {
  const out: Buffer[] = [];
  for (const [type, value, field] of [
    [CmdAttr.TIMEOUT_TCP, timeouts.tcpS, 'timeouts.tcpS'],
    [CmdAttr.TIMEOUT_TCP_FIN, timeouts.tcpFinS, 'timeouts.tcpFinS'],
    [CmdAttr.TIMEOUT_UDP, timeouts.udpS, 'timeouts.udpS'],
  ] as const) {
    // The kernel multiplies by HZ into an int: keep far below 2^31 / 1000.
    if (!Number.isInteger(value) || value < 0 || value > 2_000_000) {
      throw new ValidationError(field, `${field}: must be an integer 0..2000000 seconds, got ${value}`);
    }
    out.push(attr(type, u32(value)));
  }
  return Buffer.concat(out);
}

export function decodeTimeouts(payload: Buffer): IpvsTimeouts {
  const a = parseAttrs(payload, 'config');
  return {
    tcpS: readU32(a.get(CmdAttr.TIMEOUT_TCP), 'config.tcp'),
    tcpFinS: readU32(a.get(CmdAttr.TIMEOUT_TCP_FIN), 'config.tcpfin'),
    udpS: readU32(a.get(CmdAttr.TIMEOUT_UDP), 'config.udp'),
  };
}

export function decodeInfo(payload: Buffer): IpvsInfo {
  const a = parseAttrs(payload, 'info');
  const v = readU32(a.get(InfoAttr.VERSION), 'info.version');
  return {
    version: `${(v >> 16) & 0xff}.${(v >> 8) & 0xff}.${v & 0xff}`,
    connTableSize: readU32(a.get(InfoAttr.CONN_TAB_SIZE), 'info.connTableSize'),
  };
}
