import { crc32 } from 'node:zlib';

/**
 * WAL record framing. Every record is
 *
 *   u32 payloadBytes | u32 payloadCrc | u32 headerCrc | payload
 *
 * (little endian). `headerCrc` covers the first 8 bytes so a bit flip in a
 * length field is detected as corruption instead of being mistaken for a
 * torn tail, which would silently cut acknowledged records (swarmkit#2959).
 * CRC32 comes from zlib (native) so checksumming never dominates a write.
 */
export const RECORD_HEADER_BYTES = 12;
/** A single record larger than this is refused on write and treated as corruption on read. */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024;

export function frameRecord(payload: Uint8Array): Buffer {
  if (payload.length > MAX_RECORD_BYTES) {
    throw new RangeError(
      `WAL record payload is ${payload.length} bytes; at most ${MAX_RECORD_BYTES} accepted`,
    );
  }
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(crc32(payload), 4);
  out.writeUInt32LE(crc32(out.subarray(0, 8)), 8);
  out.set(payload, RECORD_HEADER_BYTES);
  return out;
}

export type ScanEnd =
  /** Every byte was a valid record. */
  | { kind: 'clean' }
  /** An incomplete or zero-filled last write: safe to cut the file at `offset`. */
  | { kind: 'torn'; offset: number; reason: string }
  /** A bad record followed by data: refusing is the only safe answer. */
  | { kind: 'corrupt'; offset: number; reason: string };

export interface ScanResult {
  payloads: Buffer[];
  /** Byte offset of each payload's record, for error messages. */
  offsets: number[];
  end: ScanEnd;
}

function allZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * Splits a segment's bytes into record payloads and classifies how it ends.
 * A crash between write and fdatasync leaves a prefix of the last write
 * (a short header, a header whose payload runs past the end, or zeros from
 * a preallocated page): that is a torn tail. A checksum mismatch with
 * non-zero bytes after the damaged record means the middle of the log
 * changed after it was written: that is corruption.
 */
export function scanRecords(buf: Buffer): ScanResult {
  const payloads: Buffer[] = [];
  const offsets: number[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const remaining = buf.length - offset;
    if (remaining < RECORD_HEADER_BYTES) {
      if (allZero(buf, offset)) return { payloads, offsets, end: { kind: 'torn', offset, reason: 'zeros' } };
      return {
        payloads,
        offsets,
        end: { kind: 'torn', offset, reason: `short header (${remaining} bytes)` },
      };
    }
    const size = buf.readUInt32LE(offset);
    const payloadCrc = buf.readUInt32LE(offset + 4);
    const headerCrc = buf.readUInt32LE(offset + 8);
    if (crc32(buf.subarray(offset, offset + 8)) !== headerCrc || size > MAX_RECORD_BYTES) {
      if (allZero(buf, offset)) return { payloads, offsets, end: { kind: 'torn', offset, reason: 'zeros' } };
      return {
        payloads,
        offsets,
        end: { kind: 'corrupt', offset, reason: 'record header checksum mismatch' },
      };
    }
    const start = offset + RECORD_HEADER_BYTES;
    const end = start + size;
    if (end > buf.length) {
      return {
        payloads,
        offsets,
        end: { kind: 'torn', offset, reason: `record needs ${size} bytes, ${buf.length - start} present` },
      };
    }
    const payload = buf.subarray(start, end);
    if (crc32(payload) !== payloadCrc) {
      if (allZero(buf, end)) {
        return { payloads, offsets, end: { kind: 'torn', offset, reason: 'last record checksum mismatch' } };
      }
      return {
        payloads,
        offsets,
        end: { kind: 'corrupt', offset, reason: 'record payload checksum mismatch' },
      };
    }
    payloads.push(payload);
    offsets.push(offset);
    offset = end;
  }
  return { payloads, offsets, end: { kind: 'clean' } };
}
