import { join } from 'node:path';
import { MeshError } from '../../../src/common/errors.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import { decodeConfChange, encodeConfChange } from '../core/conf-change.js';
import { MemoryStorage } from '../core/memory-storage.js';
import type {
  ConfChange,
  ConfState,
  Entry,
  EntryType,
  HardState,
  InitialState,
  Ready,
  Snapshot,
  Storage,
} from '../core/types.js';
import { Snapshotter } from './snapshotter.js';
import { Wal, type WalEntry, type WalOptions } from './wal.js';

/**
 * The durable Storage the core reads: a MemoryStorage mirror for reads, a WAL
 * and snapshot files for durability. Layout under the data directory:
 * `wal/` (segments) and `snap/` (snapshot files).
 */
export interface DiskStorageOptions extends WalOptions {
  /** Founding voters when the directory is empty (a new cluster). Ignored otherwise. */
  bootstrap?: ConfState;
  /** Entries kept in the log below a new snapshot, so slightly slow followers avoid a snapshot. */
  keepEntriesAfterSnapshot?: number;
}

const log = subsystemLogger('raft-storage');
const ENTRY_TYPES: readonly EntryType[] = ['normal', 'confChange'];

function encodeEntryBody(e: Entry): Uint8Array {
  const out = Buffer.allocUnsafe(1 + e.data.byteLength);
  out.writeUInt8(ENTRY_TYPES.indexOf(e.type), 0);
  out.set(e.data, 1);
  return out;
}

function decodeEntry(w: WalEntry): Entry {
  const type = ENTRY_TYPES[w.body[0] ?? 255];
  if (type === undefined) {
    throw new MeshError('WAL_CORRUPT', `raft WAL: entry ${w.index} has unknown type byte ${w.body[0]}`);
  }
  return { index: w.index, term: w.term, type, data: w.body.subarray(1) };
}

function encodeHardState(hs: HardState): Uint8Array {
  return Buffer.from(JSON.stringify(hs));
}

function decodeHardState(body: Uint8Array): HardState {
  const hs = JSON.parse(Buffer.from(body).toString('utf8')) as HardState;
  if (
    typeof hs.term !== 'number' ||
    typeof hs.commit !== 'number' ||
    !(hs.vote === null || typeof hs.vote === 'string')
  ) {
    throw new MeshError('WAL_CORRUPT', `raft WAL: hard state record is malformed: ${JSON.stringify(hs)}`);
  }
  return hs;
}

/**
 * The founding configuration as the first committed log entries (etcd's
 * bootstrap does the same). The snapshot at index 0 gives it to the founders
 * at once, but a manager that joins later replays the log from index 1 and
 * never sees that snapshot: without these entries it would believe itself
 * the only voter once added, and could elect itself alone.
 */
function bootstrapReady(confState: ConfState): Pick<Ready, 'entries' | 'hardState' | 'mustSync'> {
  const changes: ConfChange[] = [
    ...confState.voters.map((nodeId): ConfChange => ({ type: 'addVoter', nodeId })),
    ...confState.learners.map((nodeId): ConfChange => ({ type: 'addLearner', nodeId })),
  ];
  const entries: Entry[] = changes.map((change, i) => ({
    term: 1,
    index: i + 1,
    type: 'confChange',
    data: encodeConfChange(change),
  }));
  return { entries, hardState: { term: 1, vote: null, commit: entries.length }, mustSync: true };
}

export class DiskStorage implements Storage {
  private constructor(
    readonly dataDir: string,
    private readonly mem: MemoryStorage,
    private readonly wal: Wal,
    private readonly snapshotter: Snapshotter,
    private hardState: HardState,
    private readonly keepEntries: number,
  ) {}

  static async open(dataDir: string, opts: DiskStorageOptions = {}): Promise<DiskStorage> {
    const snapshotter = new Snapshotter(join(dataDir, 'snap'));
    let snapshot = snapshotter.loadNewest();
    const { wal, recovery } = await Wal.open(join(dataDir, 'wal'), opts);
    const fresh = snapshot === undefined && recovery.entries.length === 0 && recovery.hardState === undefined;
    if (fresh && opts.bootstrap !== undefined) {
      snapshot = { metadata: { index: 0, term: 0, confState: opts.bootstrap }, data: new Uint8Array() };
      await snapshotter.save(snapshot);
    }
    const mem = new MemoryStorage(snapshot?.metadata.confState);
    const snapIndex = snapshot?.metadata.index ?? 0;
    if (snapshot !== undefined && snapIndex > 0) mem.applySnapshot(snapshot);
    if (recovery.snapshot !== undefined && recovery.snapshot.index > snapIndex) {
      throw new MeshError(
        'SNAPSHOT_MISSING',
        `raft WAL in ${join(dataDir, 'wal')} starts after snapshot ${recovery.snapshot.index} but the newest ` +
          `snapshot file in ${join(dataDir, 'snap')} is at ${snapIndex}; rebuild this manager from the others`,
      );
    }
    const usable = recovery.entries.filter((e) => e.index > snapIndex);
    if (usable.length > 0 && usable[0]!.index !== snapIndex + 1) {
      throw new MeshError(
        'WAL_GAP',
        `raft WAL in ${join(dataDir, 'wal')} starts at entry ${usable[0]!.index} but the snapshot ends at ` +
          `${snapIndex}; entries in between are missing. Rebuild this manager from the others`,
      );
    }
    mem.append(usable.map(decodeEntry));
    const hardState =
      recovery.hardState === undefined
        ? { term: 0, vote: null, commit: 0 }
        : decodeHardState(recovery.hardState);
    if (hardState.commit < snapIndex) hardState.commit = snapIndex;
    mem.setHardState(hardState);
    log.info(
      { dataDir, snapIndex, entries: usable.length, hardState, tornBytes: recovery.tornBytes },
      'raft storage opened',
    );
    const storage = new DiskStorage(
      dataDir,
      mem,
      wal,
      snapshotter,
      hardState,
      opts.keepEntriesAfterSnapshot ?? 1000,
    );
    if (fresh && opts.bootstrap !== undefined) await storage.saveReady(bootstrapReady(opts.bootstrap));
    return storage;
  }

  initialState(): InitialState {
    return this.mem.initialState();
  }
  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    return this.mem.entries(lo, hi, maxBytes);
  }
  term(index: number): number {
    return this.mem.term(index);
  }
  firstIndex(): number {
    return this.mem.firstIndex();
  }
  lastIndex(): number {
    return this.mem.lastIndex();
  }
  snapshot(): Snapshot {
    return this.mem.snapshot();
  }
  currentHardState(): HardState {
    return { ...this.hardState };
  }

  /**
   * Persists what a Ready asks for (snapshot, entries, hard state) with one
   * fdatasync, before the caller sends the Ready's messages: a vote or an
   * append ack must never be sent for state a crash could forget.
   */
  async saveReady(ready: Pick<Ready, 'snapshot' | 'entries' | 'hardState' | 'mustSync'>): Promise<void> {
    if (ready.snapshot !== undefined && ready.snapshot.metadata.index > this.mem.snapshot().metadata.index) {
      await this.snapshotter.save(ready.snapshot);
      this.wal.appendSnapshot({ index: ready.snapshot.metadata.index, term: ready.snapshot.metadata.term });
      this.mem.applySnapshot(ready.snapshot);
    }
    if (ready.entries.length > 0) {
      this.wal.append(ready.entries.map((e) => ({ index: e.index, term: e.term, body: encodeEntryBody(e) })));
      this.mem.append(ready.entries);
    }
    if (ready.hardState !== undefined) {
      this.wal.append([], encodeHardState(ready.hardState));
      this.hardState = { ...ready.hardState };
      this.mem.setHardState(ready.hardState);
    }
    // Only a commit-index change (mustSync false) needs no fdatasync: the
    // commit index is recoverable from the leader, so it rides with the next sync.
    if (ready.mustSync || ready.snapshot !== undefined) await this.wal.sync();
    if (ready.snapshot !== undefined) this.releaseOld(ready.snapshot.metadata.index);
  }

  /**
   * Records the state machine's snapshot at `index` (already applied), makes
   * it durable, compacts the in-memory log and deletes WAL segments and
   * snapshot files it made unnecessary.
   */
  async createSnapshot(index: number, confState: ConfState, data: Uint8Array): Promise<Snapshot> {
    const snap = this.mem.createSnapshot(index, confState, data);
    if (snap.metadata.index !== index) return snap;
    await this.snapshotter.save(snap);
    this.wal.appendSnapshot({ index, term: snap.metadata.term });
    await this.wal.sync();
    const compactTo = index - this.keepEntries;
    if (compactTo > this.mem.firstIndex()) this.mem.compact(compactTo);
    this.releaseOld(index);
    return snap;
  }

  private releaseOld(snapshotIndex: number): void {
    const removed = this.wal.releaseTo(snapshotIndex);
    this.snapshotter.prune(2);
    if (removed > 0) log.debug({ removed, snapshotIndex }, 'released WAL segments');
  }

  walCounters(): { syncs: number; syncMs: number; bytes: number } {
    return { ...this.wal.counters };
  }

  walSegmentCount(): number {
    return this.wal.segmentCount();
  }

  async close(): Promise<void> {
    await this.wal.sync();
    await this.wal.close();
  }
}

/**
 * Turns one surviving manager's data into a single-member cluster (after a
 * lost quorum): drops uncommitted entries, then appends committed removals of
 * every other member, so on restart the core applies them and elects itself.
 */
export async function forceNewCluster(
  dataDir: string,
  selfId: string,
  opts: WalOptions = {},
): Promise<ConfState> {
  const storage = await DiskStorage.open(dataDir, opts);
  try {
    const hs = storage.currentHardState();
    const members = { ...storage.snapshot().metadata.confState };
    const voters = new Set(members.voters);
    const learners = new Set(members.learners);
    const first = storage.firstIndex();
    const committed =
      hs.commit >= first ? storage.entries(first, hs.commit + 1, Number.MAX_SAFE_INTEGER) : [];
    for (const e of committed) {
      if (e.type !== 'confChange') continue;
      const change = decodeConfChange(e.data);
      voters.delete(change.nodeId);
      learners.delete(change.nodeId);
      if (change.type === 'addVoter') voters.add(change.nodeId);
      if (change.type === 'addLearner') learners.add(change.nodeId);
    }
    const term = Math.max(hs.term, storage.term(hs.commit));
    let index = hs.commit;
    const removals: Entry[] = [];
    for (const id of [...voters, ...learners]) {
      if (id === selfId) continue;
      index += 1;
      removals.push({
        index,
        term,
        type: 'confChange',
        data: encodeConfChange({ type: 'removeNode', nodeId: id }),
      });
    }
    if (!voters.has(selfId)) {
      index += 1;
      removals.push({
        index,
        term,
        type: 'confChange',
        data: encodeConfChange({ type: 'addVoter', nodeId: selfId }),
      });
    }
    await storage.saveReady({
      entries: removals,
      hardState: { term, vote: null, commit: index },
      mustSync: true,
    });
    log.warn(
      { dataDir, selfId, removed: removals.length, commit: index },
      'forced a new single-member cluster',
    );
    return { voters: [selfId], learners: [] };
  } finally {
    await storage.close();
  }
}
