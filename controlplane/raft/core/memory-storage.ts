import {
  type ConfState,
  type Entry,
  type HardState,
  type InitialState,
  LogCompactedError,
  LogUnavailableError,
  type Snapshot,
  type Storage,
} from './types.js';

/** Bytes an entry costs against size limits: its data plus a fixed header. */
export function entrySizeBytes(entry: Entry): number {
  return entry.data.byteLength + 24;
}

/** Keeps entries from the front while their total stays within maxBytes (always at least one). */
export function limitEntriesSize(entries: Entry[], maxBytes: number): Entry[] {
  if (entries.length === 0 || maxBytes <= 0) return entries;
  let size = entrySizeBytes(entries[0]!);
  let n = 1;
  for (; n < entries.length; n++) {
    size += entrySizeBytes(entries[n]!);
    if (size > maxBytes) break;
  }
  return n === entries.length ? entries : entries.slice(0, n);
}

/**
 * In-memory Storage (tests, simulation). The WAL-backed storage mirrors it.
 * `ents[0]` is a dummy entry at the snapshot index carrying the snapshot term,
 * so term(firstIndex - 1) is always answerable.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = { term: 0, vote: null, commit: 0 };
  private snap: Snapshot;
  private ents: Entry[];

  /** A new storage; `confState` lists the founding members of a new cluster. */
  constructor(confState: ConfState = { voters: [], learners: [] }) {
    this.snap = {
      metadata: { index: 0, term: 0, confState: cloneConfState(confState) },
      data: new Uint8Array(),
    };
    this.ents = [{ term: 0, index: 0, type: 'normal', data: new Uint8Array() }];
  }

  initialState(): InitialState {
    return { hardState: { ...this.hardState }, confState: cloneConfState(this.snap.metadata.confState) };
  }

  setHardState(hardState: HardState): void {
    this.hardState = { ...hardState };
  }

  private offset(): number {
    return this.ents[0]!.index;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const offset = this.offset();
    if (lo <= offset) throw new LogCompactedError(lo, offset + 1);
    if (hi > this.lastIndex() + 1) throw new LogUnavailableError(hi - 1, this.lastIndex());
    return limitEntriesSize(this.ents.slice(lo - offset, hi - offset), maxBytes);
  }

  term(index: number): number {
    const offset = this.offset();
    if (index < offset) throw new LogCompactedError(index, offset + 1);
    if (index > this.lastIndex()) throw new LogUnavailableError(index, this.lastIndex());
    return this.ents[index - offset]!.term;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces everything with a snapshot received from the leader. */
  applySnapshot(snapshot: Snapshot): void {
    if (snapshot.metadata.index < this.snap.metadata.index) return;
    this.snap = snapshot;
    this.ents = [
      {
        term: snapshot.metadata.term,
        index: snapshot.metadata.index,
        type: 'normal',
        data: new Uint8Array(),
      },
    ];
  }

  /** Records the state machine's snapshot at `index` (≤ last index); call compact() to drop entries. */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) return this.snap;
    if (index > this.lastIndex()) throw new LogUnavailableError(index, this.lastIndex());
    this.snap = { metadata: { index, term: this.term(index), confState: cloneConfState(confState) }, data };
    return this.snap;
  }

  /** Drops entries up to and including `compactIndex` (which must be ≤ last index). */
  compact(compactIndex: number): void {
    const offset = this.offset();
    if (compactIndex <= offset) return;
    if (compactIndex > this.lastIndex()) throw new LogUnavailableError(compactIndex, this.lastIndex());
    const i = compactIndex - offset;
    const head = this.ents[i]!;
    this.ents = [
      { term: head.term, index: head.index, type: 'normal', data: new Uint8Array() },
      ...this.ents.slice(i + 1),
    ];
  }

  /** Appends entries, overwriting any conflicting suffix (as Ready.entries require). */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    let ents = entries;
    // Entries already compacted away are committed and identical; skip them.
    if (ents[0]!.index < first) ents = ents.slice(first - ents[0]!.index);
    if (ents.length === 0) return;
    const at = ents[0]!.index - this.offset();
    if (at > this.ents.length) throw new LogUnavailableError(ents[0]!.index, this.lastIndex());
    // In place: copying the whole log per append would make a long log quadratic.
    this.ents.length = at;
    for (const e of ents) this.ents.push(e);
  }
}

export function cloneConfState(confState: ConfState): ConfState {
  return { voters: [...confState.voters], learners: [...confState.learners] };
}
