/**
 * Encoded cluster answers keyed by the query bytes minus the ID (flags, EDNS
 * size and question case all included, so a hit is byte-for-byte what the
 * encoder would produce). A hit costs a hash of ~30 bytes, one map lookup, a
 * compare and a copy: far less than parsing and encoding (shared/FLOORS.md).
 * Bounded: when full it is dropped whole; it is also dropped on every state
 * change, so an answer never outlives the records it came from.
 */
interface Entry {
  key: Buffer;
  answer: Buffer;
}

/** FNV-1a over the query after its 2-byte ID. */
function hashQuery(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 2; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function sameQuery(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 2; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class AnswerCache {
  private readonly entries = new Map<number, Entry>();

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The cached answer under the ID of `query`, or undefined. */
  get(query: Uint8Array): Buffer | undefined {
    if (query.length < 12) return undefined;
    const entry = this.entries.get(hashQuery(query));
    if (entry === undefined || !sameQuery(entry.key, query)) return undefined;
    const out = Buffer.allocUnsafe(entry.answer.length);
    entry.answer.copy(out);
    out[0] = query[0]!;
    out[1] = query[1]!;
    return out;
  }

  /** Remembers `answer` for `query` (both copied: callers may reuse their buffers). */
  set(query: Uint8Array, answer: Uint8Array): void {
    if (this.entries.size >= this.maxEntries) this.entries.clear();
    // On a hash collision the newer query wins; the compare in get() keeps answers correct.
    this.entries.set(hashQuery(query), { key: Buffer.from(query), answer: Buffer.from(answer) });
  }

  clear(): void {
    this.entries.clear();
  }
}
