import { ValidationError } from '../../../src/common/errors.js';

/**
 * Netlink attribute (TLV) encoding, byte-exact and pure: u16 length (header
 * included, padding excluded), u16 type, payload, zero padding to 4 bytes.
 * Numbers are host-endian (x86: little-endian) except where the IPVS ABI says
 * network order (ports).
 */

export const NLA_HEADER_BYTES = 4;
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

const align4 = (n: number): number => (n + 3) & ~3;

export function attr(type: number, payload: Uint8Array): Buffer {
  const length = NLA_HEADER_BYTES + payload.length;
  const out = Buffer.alloc(align4(length));
  out.writeUInt16LE(length, 0);
  out.writeUInt16LE(type, 2);
  out.set(payload, NLA_HEADER_BYTES);
  return out;
}

export const nested = (type: number, children: readonly Buffer[]): Buffer =>
  attr(type | NLA_F_NESTED, Buffer.concat(children));

export function u8(value: number): Buffer {
  return Buffer.from([value & 0xff]);
}

export function u16(value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value);
  return b;
}

export function u16be(value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value);
  return b;
}

export function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return b;
}

export function u32be(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

export function cstring(value: string): Buffer {
  return Buffer.concat([Buffer.from(value, 'utf8'), Buffer.from([0])]);
}

/** Attributes of one level by type (the last one wins, as in the kernel's nla_parse). */
export function parseAttrs(buf: Buffer, where: string): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let offset = 0;
  while (offset + NLA_HEADER_BYTES <= buf.length) {
    const length = buf.readUInt16LE(offset);
    const type = buf.readUInt16LE(offset + 2) & NLA_TYPE_MASK;
    if (length < NLA_HEADER_BYTES || offset + length > buf.length) {
      throw new ValidationError(
        where,
        `${where}: malformed netlink attribute at byte ${offset}: length ${length}, ${buf.length - offset} bytes left`,
      );
    }
    out.set(type, buf.subarray(offset + NLA_HEADER_BYTES, offset + length));
    offset += align4(length);
  }
  return out;
}

function need(buf: Buffer | undefined, bytes: number, field: string): Buffer {
  if (buf === undefined) throw new ValidationError(field, `${field}: missing from the kernel reply`);
  if (buf.length < bytes) {
    throw new ValidationError(field, `${field}: expected ${bytes} bytes, got ${buf.length}`);
  }
  return buf;
}

export const readU8 = (buf: Buffer | undefined, field: string): number => need(buf, 1, field).readUInt8(0);
export const readU16 = (buf: Buffer | undefined, field: string): number =>
  need(buf, 2, field).readUInt16LE(0);
export const readU16be = (buf: Buffer | undefined, field: string): number =>
  need(buf, 2, field).readUInt16BE(0);
export const readU32be = (buf: Buffer | undefined, field: string): number =>
  need(buf, 4, field).readUInt32BE(0);
export const readU32 = (buf: Buffer | undefined, field: string): number =>
  need(buf, 4, field).readUInt32LE(0);

/** A u32 or u64 counter as a number (exact below 2^53, which stats never reach in practice). */
export function readCounter(buf: Buffer | undefined, field: string): number {
  if (buf !== undefined && buf.length >= 8) return Number(buf.readBigUInt64LE(0));
  return readU32(buf, field);
}

export function readCString(buf: Buffer | undefined, field: string): string {
  const b = need(buf, 0, field);
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
}
