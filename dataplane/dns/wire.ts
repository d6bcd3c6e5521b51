/**
 * The DNS wire format, as much of it as a stub resolver's server needs:
 * a strict, bounded parser for queries and header helpers (the encoder for
 * answers is encode.ts).
 *
 * Why not dns2's Packet codec on this path: it reads bit by bit (about 3x
 * the cost of the whole query on this box, see shared/FLOORS.md), swallows
 * errors per record, and reads past the end of a short buffer. Every read
 * here is bounds-checked and every loop has a fixed bound.
 */

export const RRTYPE = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  ANY: 255,
} as const;

export const RRCLASS = { IN: 1, ANY: 255 } as const;

export const RCODE = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;
export type Rcode = (typeof RCODE)[keyof typeof RCODE];

export const HEADER_BYTES = 12;
export const MAX_LABEL_BYTES = 63;
const MAX_NAME_BYTES = 255;
/** Plain (pre-EDNS) UDP answers are limited to 512 bytes (RFC 1035 §4.2.1). */
export const PLAIN_UDP_MAX_BYTES = 512;
/** The EDNS payload size this server advertises and honours (DNS flag day 2020). */
export const EDNS_UDP_MAX_BYTES = 1232;
/** A query carries one question; anything beyond a handful of other records is abuse. */
const MAX_EXTRA_RECORDS = 8;

export const FLAG_QR = 0x8000;
export const FLAG_AA = 0x0400;
export const FLAG_TC = 0x0200;
export const FLAG_RD = 0x0100;
export const FLAG_RA = 0x0080;

export interface EdnsInfo {
  udpSizeBytes: number;
  version: number;
}

export interface Query {
  id: number;
  opcode: number;
  recursionDesired: boolean;
  /** Labels joined with '.', original case, no trailing dot; '' for the root. */
  name: string;
  /** `name` in ASCII lower case: the lookup key (DNS names compare case-insensitively). */
  nameLower: string;
  /**
   * True when every label is made of letters, digits, '-', '_' or '*': only
   * such names can be cluster names. Others go upstream byte for byte.
   */
  hostnameLike: boolean;
  qtype: number;
  qclass: number;
  /** Offset just past the question section in the query bytes. */
  questionEnd: number;
  edns: EdnsInfo | undefined;
}

export type ParseResult =
  | { kind: 'query'; query: Query }
  /** Answer with `rcode` and no question: the header was readable, the rest was not acceptable. */
  | { kind: 'error'; id: number; flags: number; rcode: Rcode; reason: string }
  /** Not worth an answer: too short for a header, or a response (answering responses makes loops). */
  | { kind: 'drop'; reason: string };

function isHostnameByte(b: number): boolean {
  return (
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === 0x5f || // _
    b === 0x2a // *
  );
}

/**
 * Skips one owner name in a record section. A compression pointer ends a
 * name, so skipping never follows one and cannot loop. Returns the offset after
 * the name, or -1 when the name runs past the end or uses reserved label types.
 */
function skipName(buf: Uint8Array, start: number): number {
  let offset = start;
  for (let labels = 0; labels <= 128; labels++) {
    if (offset >= buf.length) return -1;
    const len = buf[offset]!;
    if (len === 0) return offset + 1;
    if ((len & 0xc0) === 0xc0) return offset + 2 <= buf.length ? offset + 2 : -1;
    if ((len & 0xc0) !== 0) return -1;
    offset += 1 + len;
  }
  return -1;
}

/**
 * Parses a query strictly. The question name must not use compression: in a
 * query nothing precedes it but the header, so a pointer can only be an
 * attack (or a loop), and refusing it removes pointer chasing altogether.
 */
export function parseQuery(buf: Uint8Array): ParseResult {
  if (buf.length < HEADER_BYTES) return { kind: 'drop', reason: 'shorter than a DNS header' };
  const id = (buf[0]! << 8) | buf[1]!;
  const flags = (buf[2]! << 8) | buf[3]!;
  if ((flags & FLAG_QR) !== 0) return { kind: 'drop', reason: 'a response, not a query' };
  const err = (rcode: Rcode, reason: string): ParseResult => ({ kind: 'error', id, flags, rcode, reason });
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return err(RCODE.NOTIMP, `opcode ${opcode} is not supported (only QUERY, 0)`);
  const qdcount = (buf[4]! << 8) | buf[5]!;
  const ancount = (buf[6]! << 8) | buf[7]!;
  const nscount = (buf[8]! << 8) | buf[9]!;
  const arcount = (buf[10]! << 8) | buf[11]!;
  if (qdcount !== 1) return err(RCODE.FORMERR, `question count must be 1, got ${qdcount}`);
  if (ancount + nscount + arcount > MAX_EXTRA_RECORDS)
    return err(RCODE.FORMERR, `too many records besides the question (${ancount + nscount + arcount})`);

  let offset = HEADER_BYTES;
  let name = '';
  let hostnameLike = true;
  let nameBytes = 1;
  for (;;) {
    if (offset >= buf.length) return err(RCODE.FORMERR, 'question name runs past the end');
    const len = buf[offset]!;
    if (len === 0) {
      offset += 1;
      break;
    }
    if ((len & 0xc0) !== 0) return err(RCODE.FORMERR, 'compressed or reserved label in the question');
    if (len > MAX_LABEL_BYTES) return err(RCODE.FORMERR, `label longer than ${MAX_LABEL_BYTES} bytes`);
    nameBytes += len + 1;
    if (nameBytes > MAX_NAME_BYTES) return err(RCODE.FORMERR, `name longer than ${MAX_NAME_BYTES} bytes`);
    const end = offset + 1 + len;
    if (end > buf.length) return err(RCODE.FORMERR, 'question label runs past the end');
    let label = '';
    for (let i = offset + 1; i < end; i++) {
      const b = buf[i]!;
      if (!isHostnameByte(b)) hostnameLike = false;
      label += String.fromCharCode(b);
    }
    name = name === '' ? label : `${name}.${label}`;
    offset = end;
  }
  if (offset + 4 > buf.length) return err(RCODE.FORMERR, 'question type and class run past the end');
  const qtype = (buf[offset]! << 8) | buf[offset + 1]!;
  const qclass = (buf[offset + 2]! << 8) | buf[offset + 3]!;
  offset += 4;
  const questionEnd = offset;

  let edns: EdnsInfo | undefined;
  const records = ancount + nscount + arcount;
  for (let i = 0; i < records; i++) {
    const afterName = skipName(buf, offset);
    if (afterName < 0 || afterName + 10 > buf.length) return err(RCODE.FORMERR, 'record runs past the end');
    const type = (buf[afterName]! << 8) | buf[afterName + 1]!;
    const rdLength = (buf[afterName + 8]! << 8) | buf[afterName + 9]!;
    const next = afterName + 10 + rdLength;
    if (next > buf.length) return err(RCODE.FORMERR, 'record data runs past the end');
    if (type === RRTYPE.OPT) {
      const inAdditional = i >= ancount + nscount;
      if (!inAdditional || edns !== undefined || buf[offset] !== 0)
        return err(RCODE.FORMERR, 'OPT record must be single, in the additional section, owned by the root');
      const udpSizeBytes = (buf[afterName + 2]! << 8) | buf[afterName + 3]!;
      edns = { udpSizeBytes: Math.max(PLAIN_UDP_MAX_BYTES, udpSizeBytes), version: buf[afterName + 5]! };
    }
    offset = next;
  }
  return {
    kind: 'query',
    query: {
      id,
      opcode,
      recursionDesired: (flags & FLAG_RD) !== 0,
      name,
      nameLower: name.toLowerCase(),
      hostnameLike,
      qtype,
      qclass,
      questionEnd,
      edns,
    },
  };
}

/** Largest answer the client can take over UDP. */
export function udpLimitBytes(query: Query): number {
  return query.edns === undefined
    ? PLAIN_UDP_MAX_BYTES
    : Math.min(query.edns.udpSizeBytes, EDNS_UDP_MAX_BYTES);
}

/** Reads the ID of a message (0 when too short). */
export function messageId(buf: Uint8Array): number {
  return buf.length < 2 ? 0 : (buf[0]! << 8) | buf[1]!;
}

/** True when a response has the TC (truncated) flag. */
export function isTruncated(buf: Uint8Array): boolean {
  return buf.length >= 4 && (buf[2]! & (FLAG_TC >> 8)) !== 0;
}

/** True when `buf` is a response (QR set) whose header is complete. */
export function isResponse(buf: Uint8Array): boolean {
  return buf.length >= HEADER_BYTES && (buf[2]! & (FLAG_QR >> 8)) !== 0;
}

/** Response code in the header (low 4 bits). */
export function responseRcode(buf: Uint8Array): number {
  return buf.length >= 4 ? buf[3]! & 0x0f : RCODE.SERVFAIL;
}

/** A copy of `buf` with its ID replaced. */
export function withId(buf: Uint8Array, id: number): Buffer {
  const out = Buffer.from(buf);
  out.writeUInt16BE(id & 0xffff, 0);
  return out;
}

/** True when the question section of `response` is byte-equal to the query's. */
export function sameQuestion(response: Uint8Array, queryBytes: Uint8Array, questionEnd: number): boolean {
  if (response.length < questionEnd) return false;
  if (response[4] !== 0 || response[5] !== 1) return false;
  for (let i = HEADER_BYTES; i < questionEnd; i++) {
    const a = response[i]!;
    const b = queryBytes[i]!;
    if (a !== b && asciiLower(a) !== asciiLower(b)) return false;
  }
  return true;
}

function asciiLower(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}
