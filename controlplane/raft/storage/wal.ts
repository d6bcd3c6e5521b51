import { mkdirSync, readdirSync, readFileSync, truncateSync, unlinkSync, writeSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { MeshError } from '../../../src/common/errors.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import { fsyncDir, hex16, restrictToOwner } from './fsutil.js';
import { frameRecord, scanRecords } from './record.js';

/**
 * Segmented append-only write-ahead log. It knows two record kinds: a log
 * entry (index, term, opaque body) and a hard state (opaque JSON). Entry
 * bodies and hard states are encoded by the caller, so the WAL has no
 * dependency on the Raft core's types.
 *
 * Raft may overwrite an uncommitted suffix. The WAL never rewrites bytes:
 * it appends the new entries and replay lets a lower index truncate what was
 * read before it, as etcd's WAL does.
 */
export interface WalEntry {
  index: number;
  term: number;
  body: Uint8Array;
}

export interface WalOptions {
  /** Rotate to a new segment once the current one reaches this size. */
  segmentBytes?: number;
}

export interface WalRecovery {
  /** The surviving log, contiguous, with later writes overriding earlier ones. */
  entries: WalEntry[];
  /** The newest hard state written, as the caller encoded it; undefined on a fresh WAL. */
  hardState: Uint8Array | undefined;
  /** The newest snapshot mark (the log was compacted or replaced up to it). */
  snapshot: SnapshotMark | undefined;
  /** Bytes cut from a torn last write, 0 when the log ended cleanly. */
  tornBytes: number;
}

export interface SnapshotMark {
  index: number;
  term: number;
}

const RECORD_ENTRY = 1;
const RECORD_HARD_STATE = 2;
const RECORD_SNAPSHOT = 3;
const SEGMENT_SUFFIX = '.wal';
const SEGMENT_PATTERN = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;

interface Segment {
  seq: number;
  /** The log's lastIndex + 1 when the segment was created; see releaseTo. */
  firstIndex: number;
  name: string;
}

const log = subsystemLogger('raft-wal');

export function walRepairCommand(dir: string, file: string, offset: number): string {
  return `npx tsx controlplane/raft/storage/cli.ts repair --wal-dir ${dir} --truncate-at ${file}:${offset}`;
}

export class WalCorruptError extends MeshError {
  constructor(dir: string, file: string, offset: number, reason: string) {
    super(
      'WAL_CORRUPT',
      `raft WAL is corrupt: ${reason} in ${join(dir, file)} at byte offset ${offset}; records after it ` +
        `are present, so this is not a torn write and the node refuses to start rather than lose ` +
        `acknowledged entries. If other managers are healthy, remove this manager's data directory and ` +
        `rejoin it as a new member. If this is the last copy of the cluster's data, run: ` +
        `${walRepairCommand(dir, file, offset)} (keeps what precedes the damage) and then ` +
        `npx tsx controlplane/raft/storage/cli.ts force-new-cluster --data-dir ${dirname(dir)} --node-id <this manager's id> ` +
        `(a member that lost acknowledged entries must not rejoin its old cluster as-is)`,
      { details: { file: join(dir, file), offset, reason } },
    );
    this.name = 'WalCorruptError';
  }
}

function encodeEntry(e: WalEntry): Buffer {
  const out = Buffer.allocUnsafe(17 + e.body.length);
  out.writeUInt8(RECORD_ENTRY, 0);
  out.writeBigUInt64LE(BigInt(e.index), 1);
  out.writeBigUInt64LE(BigInt(e.term), 9);
  out.set(e.body, 17);
  return out;
}

function encodeHardState(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(1 + body.length);
  out.writeUInt8(RECORD_HARD_STATE, 0);
  out.set(body, 1);
  return out;
}

function encodeSnapshotMark(mark: SnapshotMark): Buffer {
  const out = Buffer.allocUnsafe(17);
  out.writeUInt8(RECORD_SNAPSHOT, 0);
  out.writeBigUInt64LE(BigInt(mark.index), 1);
  out.writeBigUInt64LE(BigInt(mark.term), 9);
  return out;
}

function listSegments(dir: string): Segment[] {
  const segments: Segment[] = [];
  for (const name of readdirSync(dir)) {
    const m = SEGMENT_PATTERN.exec(name);
    if (m === null) continue;
    segments.push({ seq: Number.parseInt(m[1]!, 16), firstIndex: Number.parseInt(m[2]!, 16), name });
  }
  return segments.sort((a, b) => a.seq - b.seq);
}

export class Wal {
  private segments: Segment[];
  private handle: FileHandle | undefined;
  private segmentSize = 0;
  private pending: Buffer[] = [];
  private lastIndex: number;
  private lastHardState: Uint8Array | undefined;
  private lastSnapshot: SnapshotMark | undefined;
  private syncing: Promise<void> = Promise.resolve();
  private readonly segmentBytes: number;
  /** Group-commit counters, for metrics and the benchmark. */
  readonly counters = { syncs: 0, syncMs: 0, bytes: 0 };

  private constructor(
    readonly dir: string,
    segments: Segment[],
    recovery: WalRecovery,
    opts: WalOptions,
  ) {
    this.segments = segments;
    this.segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.lastIndex = recovery.entries.at(-1)?.index ?? 0;
    this.lastHardState = recovery.hardState;
    this.lastSnapshot = recovery.snapshot;
  }

  /** Opens (creating if needed) the WAL in `dir`, replaying what survived. */
  static async open(dir: string, opts: WalOptions = {}): Promise<{ wal: Wal; recovery: WalRecovery }> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    restrictToOwner(dir);
    const segments = listSegments(dir);
    const recovery = replay(dir, segments);
    const wal = new Wal(dir, segments, recovery, opts);
    // Always continue in a fresh segment: the old tail is never appended to,
    // so bytes after a truncated torn write can never be misread later.
    await wal.startSegment();
    return { wal, recovery };
  }

  /** Buffers entries and an optional hard state; nothing is durable until sync(). */
  append(entries: readonly WalEntry[], hardState?: Uint8Array): void {
    for (const e of entries) {
      this.pending.push(frameRecord(encodeEntry(e)));
      this.lastIndex = e.index;
    }
    if (hardState !== undefined) {
      this.pending.push(frameRecord(encodeHardState(hardState)));
      this.lastHardState = hardState;
    }
  }

  /**
   * Buffers a snapshot mark: the log now starts after `mark.index`. Written
   * after the snapshot file is durable, and before segments are released.
   */
  appendSnapshot(mark: SnapshotMark): void {
    this.pending.push(frameRecord(encodeSnapshotMark(mark)));
    this.lastSnapshot = mark;
    if (this.lastIndex < mark.index) this.lastIndex = mark.index;
  }

  /**
   * Writes everything buffered with one write and one fdatasync (group
   * commit). Concurrent callers queue behind the sync in progress; the next
   * sync takes everything buffered meanwhile.
   */
  sync(): Promise<void> {
    const next = this.syncing.then(() => this.flush());
    this.syncing = next.catch(() => undefined);
    return next;
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const handle = this.handle;
    if (handle === undefined) throw new MeshError('WAL_CLOSED', `raft WAL in ${this.dir} is closed`);
    const batch = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    // The write lands in the page cache (microseconds) so it is done inline;
    // only the fdatasync goes to the thread pool: one hop per group commit.
    const t0 = performance.now();
    writeAllSync(handle.fd, batch);
    await handle.datasync();
    this.counters.syncs += 1;
    this.counters.syncMs += performance.now() - t0;
    this.counters.bytes += batch.length;
    this.segmentSize += batch.length;
    if (this.segmentSize >= this.segmentBytes) await this.startSegment();
  }

  private async startSegment(): Promise<void> {
    if (this.handle !== undefined) await this.handle.close();
    const seq = (this.segments.at(-1)?.seq ?? 0) + 1;
    const segment = {
      seq,
      firstIndex: this.lastIndex + 1,
      name: `${hex16(seq)}-${hex16(this.lastIndex + 1)}${SEGMENT_SUFFIX}`,
    };
    // 0600 in a 0700 dir: entries carry the store, and the store holds the CA root key.
    const handle = await open(join(this.dir, segment.name), 'wx', 0o600);
    // Each segment repeats the snapshot mark and hard state first, so
    // releasing older segments can never lose the term, vote or log start.
    const parts: Buffer[] = [];
    if (this.lastSnapshot !== undefined) parts.push(frameRecord(encodeSnapshotMark(this.lastSnapshot)));
    if (this.lastHardState !== undefined) parts.push(frameRecord(encodeHardState(this.lastHardState)));
    const header = Buffer.concat(parts);
    await writeAll(handle, header);
    await handle.sync();
    fsyncDir(this.dir);
    this.handle = handle;
    this.segments.push(segment);
    this.segmentSize = header.length;
  }

  /**
   * Deletes segments that hold only entries at or below `snapshotIndex`. A
   * segment created when the log ended at L holds only writes of index > L
   * or overwrites of uncommitted ones, so every entry above the snapshot
   * lives in the last segment whose firstIndex ≤ snapshotIndex + 1 or later.
   */
  releaseTo(snapshotIndex: number): number {
    let keepFrom = 0;
    for (let i = 0; i < this.segments.length; i++) {
      if (this.segments[i]!.firstIndex <= snapshotIndex + 1) keepFrom = i;
    }
    const doomed = this.segments.slice(0, keepFrom);
    for (const s of doomed) unlinkSync(join(this.dir, s.name));
    if (doomed.length > 0) fsyncDir(this.dir);
    this.segments = this.segments.slice(keepFrom);
    return doomed.length;
  }

  segmentCount(): number {
    return this.segments.length;
  }

  async close(): Promise<void> {
    await this.syncing;
    const handle = this.handle;
    this.handle = undefined;
    if (handle !== undefined) await handle.close();
  }
}

function writeAllSync(fd: number, buf: Buffer): void {
  let written = 0;
  while (written < buf.length) written += writeSync(fd, buf, written, buf.length - written);
}

async function writeAll(handle: FileHandle, buf: Buffer): Promise<void> {
  let written = 0;
  while (written < buf.length) {
    const { bytesWritten } = await handle.write(buf, written, buf.length - written);
    written += bytesWritten;
  }
}

function replay(dir: string, segments: Segment[]): WalRecovery {
  let entries: WalEntry[] = [];
  let hardState: Uint8Array | undefined;
  let snapshot: SnapshotMark | undefined;
  let tornBytes = 0;
  for (let s = 0; s < segments.length; s++) {
    const segment = segments[s]!;
    const previous = segments[s - 1];
    if (previous !== undefined && segment.seq !== previous.seq + 1) {
      throw new MeshError(
        'WAL_MISSING_SEGMENT',
        `raft WAL in ${dir} is missing segment number ${previous.seq + 1} (found ${previous.name} then ` +
          `${segment.name}); rebuild this manager from the others (remove its data directory and rejoin)`,
        { details: { dir, after: previous.name } },
      );
    }
    const path = join(dir, segment.name);
    const buf = readFileSync(path);
    const scan = scanRecords(buf);
    const isLast = s === segments.length - 1;
    if (scan.end.kind === 'corrupt' || (scan.end.kind === 'torn' && !isLast)) {
      throw new WalCorruptError(dir, segment.name, scan.end.offset, scan.end.reason);
    }
    for (let r = 0; r < scan.payloads.length; r++) {
      const p = scan.payloads[r]!;
      const kind = p[0];
      const fail = (reason: string) => new WalCorruptError(dir, segment.name, scan.offsets[r]!, reason);
      if (kind === RECORD_HARD_STATE) {
        hardState = new Uint8Array(p.subarray(1));
        continue;
      }
      if ((kind !== RECORD_ENTRY && kind !== RECORD_SNAPSHOT) || p.length < 17) {
        throw fail(`unknown record kind ${kind} of ${p.length} bytes`);
      }
      const index = Number(p.readBigUInt64LE(1));
      const term = Number(p.readBigUInt64LE(9));
      if (kind === RECORD_SNAPSHOT) {
        entries = afterSnapshotMark(entries, index, term);
        snapshot = { index, term };
        continue;
      }
      // Entries at or below a snapshot are committed, hence identical to it: skip.
      if (snapshot !== undefined && index <= snapshot.index) continue;
      const first = entries[0]?.index;
      const expected = first === undefined ? undefined : first + entries.length;
      if (expected !== undefined && first !== undefined) {
        if (index > expected) throw fail(`entry ${index} leaves a gap after entry ${expected - 1}`);
        if (index < expected) entries = index <= first ? [] : entries.slice(0, index - first);
      }
      entries.push({ index, term, body: new Uint8Array(p.subarray(17)) });
    }
    if (scan.end.kind === 'torn') {
      tornBytes = buf.length - scan.end.offset;
      log.warn(
        { file: path, offset: scan.end.offset, tornBytes, reason: scan.end.reason },
        'cutting torn WAL tail',
      );
      truncateSync(path, scan.end.offset);
    }
  }
  return { entries, hardState, snapshot, tornBytes };
}

/**
 * The log after a snapshot mark. A mark below the log's start is a segment
 * header repeating an older mark: nothing changes. A local compaction keeps
 * the suffix after the mark; a snapshot installed from the leader over a log
 * that does not hold the mark's entry replaces the whole log.
 */
function afterSnapshotMark(entries: WalEntry[], index: number, term: number): WalEntry[] {
  const first = entries[0];
  if (first === undefined || index < first.index) return entries;
  const covered = entries[index - first.index];
  if (covered !== undefined && covered.term === term) return entries.slice(index - first.index + 1);
  return [];
}

/** Operator repair: cuts a segment at `offset` and deletes every later segment. */
export function truncateWalAt(dir: string, file: string, offset: number): void {
  const segments = listSegments(dir);
  const at = segments.findIndex((s) => s.name === file);
  if (at < 0)
    throw new MeshError('WAL_NO_SUCH_SEGMENT', `--truncate-at: no WAL segment named "${file}" in ${dir}`);
  truncateSync(join(dir, file), offset);
  for (const s of segments.slice(at + 1)) unlinkSync(join(dir, s.name));
  fsyncDir(dir);
}
