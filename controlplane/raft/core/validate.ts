import { RAFT_MESSAGE_TYPES, type RaftMessage } from './types.js';

const MAX_NODE_ID_LENGTH = 256;

function isIndex(v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isEntryShape(v: unknown): boolean {
  return typeof v === 'object' && v !== null;
}

function isIdList(v: unknown): boolean {
  return (
    Array.isArray(v) &&
    v.every((id) => typeof id === 'string' && id.length > 0 && id.length <= MAX_NODE_ID_LENGTH)
  );
}

function isBytes(v: unknown): boolean {
  return v instanceof Uint8Array;
}

/**
 * Why a peer message is malformed or not for us, or undefined when it is
 * well-formed. The core drops bad messages instead of crashing; the transport
 * runs the same check to log and drop the peer.
 */
export function validateMessage(m: RaftMessage, self: string): string | undefined {
  if (typeof m !== 'object' || m === null) return 'message is not an object';
  if (!RAFT_MESSAGE_TYPES.includes(m.type)) return `type: unknown message type ${JSON.stringify(m.type)}`;
  if (typeof m.from !== 'string' || m.from.length === 0 || m.from.length > MAX_NODE_ID_LENGTH) {
    return 'from: must be a node ID';
  }
  if (m.to !== self) return `to: message for ${JSON.stringify(m.to)} reached ${self}`;
  if (m.from === self) return 'from: message claims to come from this node';
  if (!isIndex(m.term)) return `term: must be a non-negative integer, got ${String(m.term)}`;
  // Only forwarded requests are term-agnostic; anything else with term 0 would skip the term checks.
  if (m.term === 0 && m.type !== 'propose' && m.type !== 'readIndex' && m.type !== 'transferLeader') {
    return `term: a ${m.type} message needs a term`;
  }
  switch (m.type) {
    case 'preVote':
    case 'vote':
      if (!isIndex(m.lastLogIndex) || !isIndex(m.lastLogTerm))
        return 'lastLogIndex/lastLogTerm: must be indexes';
      return m.term === 0 ? 'term: vote requests need a term' : undefined;
    case 'append': {
      if (!isIndex(m.prevLogIndex) || !isIndex(m.prevLogTerm) || !isIndex(m.commit)) {
        return 'prevLogIndex/prevLogTerm/commit: must be indexes';
      }
      if (!Array.isArray(m.entries)) return 'entries: must be an array';
      let expected = m.prevLogIndex + 1;
      for (const e of m.entries) {
        if (!isEntryShape(e)) return 'entries: each entry must be an object';
        if (e.index !== expected++ || !isIndex(e.term) || e.term > m.term || !isBytes(e.data)) {
          return `entries: entry ${String(e.index)} is out of sequence or malformed`;
        }
        if (e.type !== 'normal' && e.type !== 'confChange')
          return `entries: unknown entry type ${String(e.type)}`;
      }
      return m.term === 0 ? 'term: appends need a term' : undefined;
    }
    case 'appendResponse':
      return isIndex(m.index) && isIndex(m.rejectHint) && isIndex(m.logTerm)
        ? undefined
        : 'index: must be an index';
    case 'heartbeat':
      return isIndex(m.commit) && isBytes(m.context) ? undefined : 'commit/context: malformed';
    case 'heartbeatResponse':
    case 'readIndex':
      return isBytes(m.context) ? undefined : 'context: must be bytes';
    case 'readIndexResponse':
      return isIndex(m.index) && isBytes(m.context) ? undefined : 'index/context: malformed';
    case 'snapshot': {
      const md = m.metadata;
      if (typeof md !== 'object' || md === null || !isIndex(md.index) || !isIndex(md.term)) {
        return 'metadata: malformed';
      }
      const conf = md.confState as { voters?: unknown; learners?: unknown } | undefined;
      if (!isIdList(conf?.voters) || !isIdList(conf?.learners)) return 'metadata.confState: malformed';
      if (!isIndex(m.offset) || !isIndex(m.totalBytes) || !isBytes(m.data))
        return 'offset/totalBytes/data: malformed';
      return undefined;
    }
    case 'propose':
      if (!Array.isArray(m.entries)) return 'entries: must be an array';
      for (const e of m.entries) {
        if (!isEntryShape(e) || !isBytes(e.data) || (e.type !== 'normal' && e.type !== 'confChange'))
          return 'entries: malformed entry';
      }
      return undefined;
    case 'transferLeader':
      return typeof m.target === 'string' ? undefined : 'target: must be a node ID';
    case 'preVoteResponse':
    case 'voteResponse':
    case 'timeoutNow':
      return undefined;
  }
}
