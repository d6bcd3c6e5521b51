import {
  RaftEntryType,
  type RaftEntry as WireEntry,
  type RaftMessage as WireMessage,
  RaftMessageType as WireType,
} from '../../../src/api/gen/meshd/v1/raft.js';
import { assertNever, ValidationError } from '../../../src/common/errors.js';
import type { Entry, NodeId, RaftMessage, RaftMessageType, SnapshotMetadata } from '../core/types.js';

/**
 * Conversion between the core's RaftMessage union and the flat protobuf
 * message, with validation of everything a peer sends: a peer is not
 * trusted to send well-formed numbers, ids or sizes.
 */
export interface WireLimits {
  /** Max entries in one append or propose message. */
  maxEntriesPerMessage: number;
  /** Max bytes of one snapshot chunk's data. */
  maxChunkBytes: number;
  /** Max members listed in a snapshot's ConfState. */
  maxMembers: number;
}

export const DEFAULT_WIRE_LIMITS: WireLimits = {
  maxEntriesPerMessage: 64 * 1024,
  maxChunkBytes: 8 * 1024 * 1024,
  maxMembers: 1024,
};

const MAX_ID_LENGTH = 256;
const EMPTY = Buffer.alloc(0);

const TO_WIRE: Record<RaftMessageType, WireType> = {
  preVote: WireType.RAFT_MESSAGE_TYPE_PRE_VOTE,
  preVoteResponse: WireType.RAFT_MESSAGE_TYPE_PRE_VOTE_RESPONSE,
  vote: WireType.RAFT_MESSAGE_TYPE_VOTE,
  voteResponse: WireType.RAFT_MESSAGE_TYPE_VOTE_RESPONSE,
  append: WireType.RAFT_MESSAGE_TYPE_APPEND,
  appendResponse: WireType.RAFT_MESSAGE_TYPE_APPEND_RESPONSE,
  heartbeat: WireType.RAFT_MESSAGE_TYPE_HEARTBEAT,
  heartbeatResponse: WireType.RAFT_MESSAGE_TYPE_HEARTBEAT_RESPONSE,
  snapshot: WireType.RAFT_MESSAGE_TYPE_SNAPSHOT,
  propose: WireType.RAFT_MESSAGE_TYPE_PROPOSE,
  readIndex: WireType.RAFT_MESSAGE_TYPE_READ_INDEX,
  readIndexResponse: WireType.RAFT_MESSAGE_TYPE_READ_INDEX_RESPONSE,
  transferLeader: WireType.RAFT_MESSAGE_TYPE_TRANSFER_LEADER,
  timeoutNow: WireType.RAFT_MESSAGE_TYPE_TIMEOUT_NOW,
};
const FROM_WIRE = new Map<WireType, RaftMessageType>(
  Object.entries(TO_WIRE).map(([k, v]) => [v, k as RaftMessageType]),
);

function bytes(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function entryToWire(e: Entry): WireEntry {
  return {
    term: e.term,
    index: e.index,
    type:
      e.type === 'normal' ? RaftEntryType.RAFT_ENTRY_TYPE_NORMAL : RaftEntryType.RAFT_ENTRY_TYPE_CONF_CHANGE,
    data: bytes(e.data),
  };
}

function blankWire(m: RaftMessage): WireMessage {
  return {
    type: TO_WIRE[m.type],
    from: m.from,
    to: m.to,
    term: m.term,
    lastLogIndex: 0,
    lastLogTerm: 0,
    transfer: false,
    reject: false,
    prevLogIndex: 0,
    prevLogTerm: 0,
    entries: [],
    commit: 0,
    index: 0,
    rejectHint: 0,
    logTerm: 0,
    context: EMPTY,
    snapshotMetadata: undefined,
    offset: 0,
    totalBytes: 0,
    data: EMPTY,
    done: false,
    target: '',
  };
}

export function toWire(m: RaftMessage): WireMessage {
  const w = blankWire(m);
  switch (m.type) {
    case 'preVote':
      return { ...w, lastLogIndex: m.lastLogIndex, lastLogTerm: m.lastLogTerm };
    case 'vote':
      return { ...w, lastLogIndex: m.lastLogIndex, lastLogTerm: m.lastLogTerm, transfer: m.transfer };
    case 'preVoteResponse':
    case 'voteResponse':
      return { ...w, reject: m.reject };
    case 'append':
      return {
        ...w,
        prevLogIndex: m.prevLogIndex,
        prevLogTerm: m.prevLogTerm,
        entries: m.entries.map(entryToWire),
        commit: m.commit,
      };
    case 'appendResponse':
      return { ...w, index: m.index, reject: m.reject, rejectHint: m.rejectHint, logTerm: m.logTerm };
    case 'heartbeat':
      return { ...w, commit: m.commit, context: bytes(m.context) };
    case 'heartbeatResponse':
    case 'readIndex':
      return { ...w, context: bytes(m.context) };
    case 'snapshot':
      return {
        ...w,
        snapshotMetadata: {
          index: m.metadata.index,
          term: m.metadata.term,
          confState: { voters: m.metadata.confState.voters, learners: m.metadata.confState.learners },
        },
        offset: m.offset,
        totalBytes: m.totalBytes,
        data: bytes(m.data),
        done: m.done,
      };
    case 'propose':
      return { ...w, entries: m.entries.map(entryToWire) };
    case 'readIndexResponse':
      return { ...w, index: m.index, context: bytes(m.context) };
    case 'transferLeader':
      return { ...w, target: m.target };
    case 'timeoutNow':
      return w;
    default:
      return assertNever(m, 'raft message');
  }
}

function num(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ValidationError(
      field,
      `raft message: ${field} must be a non-negative safe integer, got ${value}`,
    );
  }
  return value;
}

function id(field: string, value: string): NodeId {
  if (value.length === 0 || value.length > MAX_ID_LENGTH) {
    throw new ValidationError(
      field,
      `raft message: ${field} must be a node id of 1..${MAX_ID_LENGTH} characters, got ${JSON.stringify(value.slice(0, 40))}`,
    );
  }
  return value;
}

function entriesFromWire(list: WireEntry[], limits: WireLimits): Entry[] {
  if (list.length > limits.maxEntriesPerMessage) {
    throw new ValidationError(
      'entries',
      `raft message: at most ${limits.maxEntriesPerMessage} entries per message accepted, got ${list.length}`,
    );
  }
  const out: Entry[] = [];
  for (let i = 0; i < list.length; i++) {
    const e = list[i]!;
    let type: Entry['type'];
    if (e.type === RaftEntryType.RAFT_ENTRY_TYPE_NORMAL) type = 'normal';
    else if (e.type === RaftEntryType.RAFT_ENTRY_TYPE_CONF_CHANGE) type = 'confChange';
    else
      throw new ValidationError(
        `entries[${i}].type`,
        `raft message: entries[${i}].type must be NORMAL or CONF_CHANGE, got ${e.type}`,
      );
    out.push({
      term: num(`entries[${i}].term`, e.term),
      index: num(`entries[${i}].index`, e.index),
      type,
      data: e.data,
    });
  }
  return out;
}

function metadataFromWire(w: WireMessage, limits: WireLimits): SnapshotMetadata {
  const meta = w.snapshotMetadata;
  if (meta === undefined)
    throw new ValidationError('snapshotMetadata', 'raft snapshot chunk: snapshotMetadata is required');
  const conf = meta.confState ?? { voters: [], learners: [] };
  if (conf.voters.length + conf.learners.length > limits.maxMembers) {
    throw new ValidationError(
      'snapshotMetadata.confState',
      `raft snapshot chunk: at most ${limits.maxMembers} members accepted`,
    );
  }
  return {
    index: num('snapshotMetadata.index', meta.index),
    term: num('snapshotMetadata.term', meta.term),
    confState: {
      voters: conf.voters.map((v, i) => id(`snapshotMetadata.confState.voters[${i}]`, v)),
      learners: conf.learners.map((v, i) => id(`snapshotMetadata.confState.learners[${i}]`, v)),
    },
  };
}

/** Validates and converts a peer's message; throws ValidationError naming the bad field. */
export function fromWire(w: WireMessage, limits: WireLimits = DEFAULT_WIRE_LIMITS): RaftMessage {
  const type = FROM_WIRE.get(w.type);
  if (type === undefined) throw new ValidationError('type', `raft message: unknown type ${w.type}`);
  const base = { from: id('from', w.from), to: id('to', w.to), term: num('term', w.term) };
  switch (type) {
    case 'preVote':
      return {
        ...base,
        type,
        lastLogIndex: num('lastLogIndex', w.lastLogIndex),
        lastLogTerm: num('lastLogTerm', w.lastLogTerm),
      };
    case 'vote':
      return {
        ...base,
        type,
        lastLogIndex: num('lastLogIndex', w.lastLogIndex),
        lastLogTerm: num('lastLogTerm', w.lastLogTerm),
        transfer: w.transfer,
      };
    case 'preVoteResponse':
    case 'voteResponse':
      return { ...base, type, reject: w.reject };
    case 'append':
      return {
        ...base,
        type,
        prevLogIndex: num('prevLogIndex', w.prevLogIndex),
        prevLogTerm: num('prevLogTerm', w.prevLogTerm),
        entries: entriesFromWire(w.entries, limits),
        commit: num('commit', w.commit),
      };
    case 'appendResponse':
      return {
        ...base,
        type,
        index: num('index', w.index),
        reject: w.reject,
        rejectHint: num('rejectHint', w.rejectHint),
        logTerm: num('logTerm', w.logTerm),
      };
    case 'heartbeat':
      return { ...base, type, commit: num('commit', w.commit), context: w.context };
    case 'heartbeatResponse':
    case 'readIndex':
      return { ...base, type, context: w.context };
    case 'snapshot': {
      const totalBytes = num('totalBytes', w.totalBytes);
      const offset = num('offset', w.offset);
      if (w.data.length > limits.maxChunkBytes) {
        throw new ValidationError(
          'data',
          `raft snapshot chunk: at most ${limits.maxChunkBytes} bytes per chunk accepted, got ${w.data.length}`,
        );
      }
      if (offset + w.data.length > totalBytes) {
        throw new ValidationError(
          'offset',
          `raft snapshot chunk: offset ${offset} + ${w.data.length} bytes exceeds totalBytes ${totalBytes}`,
        );
      }
      return {
        ...base,
        type,
        metadata: metadataFromWire(w, limits),
        offset,
        totalBytes,
        data: w.data,
        done: w.done,
      };
    }
    case 'propose':
      return { ...base, type, entries: entriesFromWire(w.entries, limits) };
    case 'readIndexResponse':
      return { ...base, type, index: num('index', w.index), context: w.context };
    case 'transferLeader':
      return { ...base, type, target: id('target', w.target) };
    case 'timeoutNow':
      return { ...base, type };
    default:
      return assertNever(type, 'raft message type');
  }
}
