import { randomBytes } from 'node:crypto';

/**
 * Every normal entry the driver proposes is wrapped so the proposer can tell
 * its own entry when it is applied (the core does not return an index when
 * it accepts a proposal, and a follower forwards proposals to the leader):
 *
 *   u8 version (1) | 8-byte proposer tag | u64 sequence | payload
 *
 * Entries without the header (the leader's empty entry of its term) carry no
 * payload for the state machine.
 */
const VERSION = 1;
export const ENVELOPE_BYTES = 17;

export class ProposalTagger {
  private readonly tag = randomBytes(8);
  private seq = 0;

  wrap(payload: Uint8Array): { key: string; data: Uint8Array } {
    const out = Buffer.allocUnsafe(ENVELOPE_BYTES + payload.byteLength);
    out.writeUInt8(VERSION, 0);
    this.tag.copy(out, 1);
    this.seq += 1;
    out.writeBigUInt64LE(BigInt(this.seq), 9);
    out.set(payload, ENVELOPE_BYTES);
    return { key: out.toString('hex', 1, ENVELOPE_BYTES), data: out };
  }
}

/** Splits an applied entry's data into its proposal key and payload; undefined for non-envelopes. */
export function unwrap(data: Uint8Array): { key: string; payload: Uint8Array } | undefined {
  if (data.byteLength < ENVELOPE_BYTES || data[0] !== VERSION) return undefined;
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return { key: buf.toString('hex', 1, ENVELOPE_BYTES), payload: buf.subarray(ENVELOPE_BYTES) };
}
