/**
 * Encodes answers for the few record types the cluster serves (A, PTR, SRV,
 * and an OPT echo). Owner names of answers point at the question name, so a
 * response is the query's question bytes plus compact records.
 */
import {
  EDNS_UDP_MAX_BYTES,
  FLAG_AA,
  FLAG_QR,
  FLAG_RA,
  FLAG_RD,
  FLAG_TC,
  HEADER_BYTES,
  MAX_LABEL_BYTES,
  type Query,
  RCODE,
  type Rcode,
  RRCLASS,
  RRTYPE,
} from './wire.js';

/** Extended RCODE 16 (RFC 6891 §9): the query's EDNS version is not supported. */
const EDNS_BADVERS_HIGH_BITS = 1;

export type ResourceRecord =
  | { type: 'A'; name: string | undefined; ttlS: number; address: string }
  | { type: 'PTR'; name: string | undefined; ttlS: number; target: string }
  | {
      type: 'SRV';
      name: string | undefined;
      ttlS: number;
      priority: number;
      weight: number;
      port: number;
      target: string;
    };

/** Appends bytes to a growing buffer; the encoder's only allocation is the final copy. */
class ByteWriter {
  private buf = Buffer.allocUnsafe(512);
  length = 0;

  private ensure(extra: number): void {
    if (this.length + extra <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + extra));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.length++] = v & 0xff;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v & 0xffff, this.length);
    this.length += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.length);
    this.length += 4;
  }
  bytes(src: Uint8Array, start: number, end: number): void {
    this.ensure(end - start);
    this.buf.set(src.subarray(start, end), this.length);
    this.length += end - start;
  }
  patchU16(at: number, v: number): void {
    this.buf.writeUInt16BE(v & 0xffff, at);
  }
  /** An uncompressed name; `name` is dotted text of valid hostname labels. */
  name(name: string): void {
    const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
    if (trimmed !== '') {
      for (const label of trimmed.split('.')) {
        const len = Math.min(label.length, MAX_LABEL_BYTES);
        this.u8(len);
        this.ensure(len);
        this.length += this.buf.write(label.slice(0, len), this.length, 'latin1');
      }
    }
    this.u8(0);
  }
  done(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.length));
  }
}

/** Pointer to the question name, which always starts right after the header. */
const POINTER_TO_QNAME = 0xc000 | HEADER_BYTES;

function writeIpv4(w: ByteWriter, address: string): void {
  const parts = address.split('.');
  for (let i = 0; i < 4; i++) w.u8(Number(parts[i] ?? 0));
}

function writeRecord(w: ByteWriter, rr: ResourceRecord): void {
  if (rr.name === undefined) w.u16(POINTER_TO_QNAME);
  else w.name(rr.name);
  const typeCode = rr.type === 'A' ? RRTYPE.A : rr.type === 'PTR' ? RRTYPE.PTR : RRTYPE.SRV;
  w.u16(typeCode);
  w.u16(RRCLASS.IN);
  w.u32(rr.ttlS);
  const rdLengthAt = w.length;
  w.u16(0);
  const rdStart = w.length;
  switch (rr.type) {
    case 'A':
      writeIpv4(w, rr.address);
      break;
    case 'PTR':
      w.name(rr.target);
      break;
    case 'SRV':
      w.u16(rr.priority);
      w.u16(rr.weight);
      w.u16(rr.port);
      w.name(rr.target);
      break;
  }
  w.patchU16(rdLengthAt, w.length - rdStart);
}

export interface ResponseSpec {
  rcode: Rcode;
  authoritative: boolean;
  /** Records owned by the question name use `name: undefined` (a pointer to it). */
  answers: readonly ResourceRecord[];
  additionals: readonly ResourceRecord[];
  /** Answers past this size are dropped and the TC bit set, so the client retries over TCP. */
  maxBytes: number;
}

/**
 * Encodes a response to `query`, echoing its question bytes as received (the
 * client checks them, case included: DNS 0x20). Answers `BADVERS` to an EDNS
 * version other than 0 (RFC 6891 §6.1.3).
 */
export function encodeResponse(queryBytes: Uint8Array, query: Query, spec: ResponseSpec): Buffer {
  const badVersion = query.edns !== undefined && query.edns.version !== 0;
  const answers = badVersion ? [] : spec.answers;
  const additionals = badVersion ? [] : spec.additionals;
  const build = (withRecords: boolean): Buffer => {
    const w = new ByteWriter();
    let flags = FLAG_QR | (query.opcode << 11) | FLAG_RA | (badVersion ? 0 : spec.rcode);
    if (query.recursionDesired) flags |= FLAG_RD;
    if (spec.authoritative) flags |= FLAG_AA;
    if (!withRecords && answers.length + additionals.length > 0) flags |= FLAG_TC;
    w.u16(query.id);
    w.u16(flags);
    w.u16(1);
    w.u16(withRecords ? answers.length : 0);
    w.u16(0);
    w.u16((withRecords ? additionals.length : 0) + (query.edns === undefined ? 0 : 1));
    w.bytes(queryBytes, HEADER_BYTES, query.questionEnd);
    if (withRecords) {
      for (const rr of answers) writeRecord(w, rr);
      for (const rr of additionals) writeRecord(w, rr);
    }
    if (query.edns !== undefined) {
      w.u8(0);
      w.u16(RRTYPE.OPT);
      w.u16(EDNS_UDP_MAX_BYTES);
      w.u32(badVersion ? EDNS_BADVERS_HIGH_BITS << 24 : 0);
      w.u16(0);
    }
    return w.done();
  };
  const full = build(true);
  if (full.length <= spec.maxBytes) return full;
  return build(false);
}

/** A header-only error answer (no question) for a query whose header was readable. */
export function encodeHeaderError(id: number, queryFlags: number, rcode: Rcode): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  const opcodeBits = queryFlags & 0x7800;
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(FLAG_QR | opcodeBits | (queryFlags & FLAG_RD) | FLAG_RA | rcode, 2);
  return out;
}

/**
 * A SERVFAIL for `query` with its question echoed, for upstream failures:
 * the client learns quickly instead of waiting for its own timeout.
 */
export function encodeServfail(queryBytes: Uint8Array, query: Query): Buffer {
  return encodeResponse(queryBytes, query, {
    rcode: RCODE.SERVFAIL,
    authoritative: false,
    answers: [],
    additionals: [],
    maxBytes: 65535,
  });
}

/**
 * An empty answer with TC set, for a response too big for the client's UDP
 * limit: the client retries over TCP (RFC 7766) and gets it whole there.
 */
export function encodeTruncated(queryBytes: Uint8Array, query: Query, rcode: number): Buffer {
  const out = encodeResponse(queryBytes, query, {
    rcode: (rcode & 0x0f) as Rcode,
    authoritative: false,
    answers: [],
    additionals: [],
    maxBytes: 65535,
  });
  out[2] = out[2]! | (FLAG_TC >> 8);
  return out;
}
