import { entrySizeBytes } from './memory-storage.js';
import type { Raft } from './raft.js';
import {
  type Entry,
  type NodeId,
  ProposalDroppedError,
  type RaftMessage,
  type Snapshot,
  type SnapshotMetadata,
} from './types.js';

type Msg<T extends RaftMessage['type']> = Extract<RaftMessage, { type: T }>;

/** A snapshot being received chunk by chunk from one leader. */
export interface SnapshotAssembly {
  from: string;
  metadata: SnapshotMetadata;
  totalBytes: number;
  received: number;
  chunks: Uint8Array[];
}

/**
 * Sends the next append to `to` if its progress allows; falls back to a
 * snapshot when the entries it needs are compacted. Returns whether a message
 * went out.
 */
export function maybeSendAppend(r: Raft, to: string, sendIfEmpty: boolean): boolean {
  const pr = r.tracker.progress.get(to);
  if (pr === undefined || to === r.id || pr.isPaused()) return false;
  const prevLogIndex = pr.next - 1;
  const prevLogTerm = r.log.term(prevLogIndex);
  if (prevLogTerm === undefined) return sendSnapshot(r, to);
  let entries: Entry[] = [];
  if (r.log.lastIndex() >= pr.next) {
    try {
      entries = r.log.entriesFrom(pr.next, r.config.maxSizePerMsg);
    } catch {
      return sendSnapshot(r, to);
    }
  }
  if (entries.length === 0 && !sendIfEmpty) return false;
  let bytes = 0;
  for (const e of entries) bytes += entrySizeBytes(e);
  r.send({
    type: 'append',
    from: r.id,
    to,
    term: r.term,
    prevLogIndex,
    prevLogTerm,
    entries,
    commit: r.log.committed,
  });
  const last = entries[entries.length - 1];
  pr.sentEntries(entries.length, bytes, last === undefined ? prevLogIndex : last.index);
  return true;
}

/**
 * Streams the current snapshot to `to` in chunks of snapshotChunkBytes: no
 * size cap (swarmkit#2374), the transport sends them in order on one stream
 * and reports the outcome with reportSnapshot().
 */
function sendSnapshot(r: Raft, to: string): boolean {
  const pr = r.tracker.progress.get(to);
  // A follower not heard from recently is probably down: do not build a stream for nobody.
  if (pr === undefined || !pr.recentActive) return false;
  let snapshot: Snapshot;
  try {
    snapshot = r.log.snapshot();
  } catch {
    return false;
  }
  if (snapshot.metadata.index === 0) return false;
  pr.becomeSnapshot(snapshot.metadata.index);
  const chunkBytes = r.config.snapshotChunkBytes;
  const total = snapshot.data.byteLength;
  let offset = 0;
  do {
    const end = Math.min(total, offset + chunkBytes);
    r.send({
      type: 'snapshot',
      from: r.id,
      to,
      term: r.term,
      metadata: snapshot.metadata,
      offset,
      totalBytes: total,
      data: snapshot.data.subarray(offset, end),
      done: end === total,
    });
    offset = end;
  } while (offset < total);
  return true;
}

export function bcastAppend(r: Raft): void {
  for (const id of [...r.tracker.progress.keys()].sort()) if (id !== r.id) maybeSendAppend(r, id, true);
}

export function bcastHeartbeat(r: Raft, context: Uint8Array): void {
  for (const [id, pr] of [...r.tracker.progress.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (id === r.id) continue;
    // The follower may not have entries up to our commit: never tell it more than it matched.
    const commit = Math.min(pr.match, r.log.committed);
    r.send({ type: 'heartbeat', from: r.id, to: id, term: r.term, commit, context });
  }
}

export function sendTimeoutNow(r: Raft, to: string): void {
  r.send({ type: 'timeoutNow', from: r.id, to, term: r.term });
}

function respondAppend(r: Raft, to: string, index: number): void {
  r.send({
    type: 'appendResponse',
    from: r.id,
    to,
    term: r.term,
    index,
    reject: false,
    rejectHint: 0,
    logTerm: 0,
  });
}

/** Follower side of AppendEntries (§5.3). */
export function handleAppend(r: Raft, m: Msg<'append'>): void {
  if (m.prevLogIndex < r.log.committed) {
    respondAppend(r, m.from, r.log.committed);
    return;
  }
  const lastNewIndex = r.log.maybeAppend(m.prevLogIndex, m.prevLogTerm, m.commit, m.entries);
  if (lastNewIndex !== undefined) {
    respondAppend(r, m.from, lastNewIndex);
    return;
  }
  // Fast back-tracking: hint the largest index whose term is ≤ the leader's prevLogTerm,
  // so the leader skips a whole term of conflicting entries per round trip.
  const hint = r.log.findConflictByTerm(Math.min(m.prevLogIndex, r.log.lastIndex()), m.prevLogTerm);
  r.send({
    type: 'appendResponse',
    from: r.id,
    to: m.from,
    term: r.term,
    index: m.prevLogIndex,
    reject: true,
    rejectHint: hint.index,
    logTerm: hint.term,
  });
}

export function handleHeartbeat(r: Raft, m: Msg<'heartbeat'>): void {
  r.log.commitTo(Math.min(m.commit, r.log.lastIndex()));
  r.send({ type: 'heartbeatResponse', from: r.id, to: m.from, term: r.term, context: m.context });
}

/** Follower side of the chunked snapshot stream; out-of-order or inconsistent chunks abort it. */
export function handleSnapshotChunk(r: Raft, m: Msg<'snapshot'>): void {
  if (m.offset === 0) {
    r.snapshotAssembly = {
      from: m.from,
      metadata: m.metadata,
      totalBytes: m.totalBytes,
      received: 0,
      chunks: [],
    };
  }
  const a = r.snapshotAssembly;
  if (
    a === undefined ||
    a.from !== m.from ||
    a.metadata.index !== m.metadata.index ||
    a.metadata.term !== m.metadata.term ||
    a.totalBytes !== m.totalBytes ||
    a.received !== m.offset ||
    a.received + m.data.byteLength > a.totalBytes
  ) {
    r.snapshotAssembly = undefined;
    return;
  }
  a.chunks.push(m.data);
  a.received += m.data.byteLength;
  if (!m.done) return;
  r.snapshotAssembly = undefined;
  if (a.received !== a.totalBytes) return;
  const data = new Uint8Array(a.totalBytes);
  let at = 0;
  for (const c of a.chunks) {
    data.set(c, at);
    at += c.byteLength;
  }
  const snapshot: Snapshot = { metadata: a.metadata, data };
  if (restore(r, snapshot)) respondAppend(r, m.from, r.log.lastIndex());
  else respondAppend(r, m.from, r.log.committed);
}

function restore(r: Raft, snapshot: Snapshot): boolean {
  const { index, term, confState } = snapshot.metadata;
  if (index <= r.log.committed) return false;
  if (r.log.matchTerm(index, term)) {
    // We already have the entries: fast-forward the commit instead of discarding the log.
    r.log.commitTo(index);
    return false;
  }
  r.log.restore(snapshot);
  r.tracker.setConfState(confState, r.log.lastIndex() + 1);
  return true;
}

export function dropped(local: boolean, reason: string): void {
  if (local) throw new ProposalDroppedError(reason);
}

/** The transport could not reach `id`. */
export function onPeerUnreachable(r: Raft, id: NodeId): void {
  const pr = r.tracker.progress.get(id);
  if (r.role !== 'leader' || pr === undefined) return;
  // An unreachable follower in replicate probably lost appends: probe again.
  if (pr.state === 'replicate') pr.becomeProbe();
}

/** The transport finished (ok) or abandoned a snapshot stream to `id`. */
export function onSnapshotReported(r: Raft, id: NodeId, ok: boolean): void {
  const pr = r.tracker.progress.get(id);
  if (r.role !== 'leader' || pr === undefined || pr.state !== 'snapshot') return;
  if (!ok) pr.pendingSnapshot = 0;
  pr.becomeProbe();
  // Wait for the next heartbeat response before probing (the follower may still be restoring).
  pr.msgAppFlowPaused = true;
}
