import { decodeConfChange } from './conf-change.js';
import { checkConfChange } from './membership.js';
import { voteResult } from './quorum.js';
import type { Raft } from './raft.js';
import {
  bcastAppend,
  bcastHeartbeat,
  dropped,
  handleAppend,
  handleHeartbeat,
  handleSnapshotChunk,
  maybeSendAppend,
  sendTimeoutNow,
} from './replication.js';
import type { NodeId, RaftMessage } from './types.js';

type Msg<T extends RaftMessage['type']> = Extract<RaftMessage, { type: T }>;

const MAX_PENDING_READ_INDEX = 1024;

/** Leader step. `local` marks calls from this node's own API (errors are thrown to the caller). */
export function stepLeader(r: Raft, m: RaftMessage, local = false): void {
  switch (m.type) {
    case 'propose':
      leaderPropose(r, m, local);
      return;
    case 'readIndex':
      leaderReadIndex(r, m.from, m.context, local);
      return;
    case 'transferLeader':
      leaderTransfer(r, m.target);
      return;
    case 'appendResponse':
      leaderAppendResponse(r, m);
      return;
    case 'heartbeatResponse':
      leaderHeartbeatResponse(r, m);
      return;
    default:
      // Votes are handled before role dispatch; other messages mean nothing to a leader.
      return;
  }
}

function leaderPropose(r: Raft, m: Msg<'propose'>, local: boolean): void {
  if (m.entries.length === 0) return;
  if (!r.tracker.progress.has(r.id)) {
    dropped(local, 'this leader was removed from the cluster');
    return;
  }
  if (r.leadTransferee !== null) {
    dropped(local, `leadership is being transferred to ${r.leadTransferee}`);
    return;
  }
  let nextIndex = r.log.lastIndex() + 1;
  let confIndex = r.pendingConfIndex;
  for (const e of m.entries) {
    if (e.type === 'confChange') {
      // One membership change at a time: the previous one must be applied first.
      if (confIndex > r.log.applied) {
        dropped(local, `conf change ${confIndex} is still pending`);
        return;
      }
      if (!local) {
        try {
          checkConfChange(r, decodeConfChange(e.data));
        } catch {
          return;
        }
      }
      confIndex = nextIndex;
    }
    nextIndex++;
  }
  const fresh = m.entries.map((e) => ({ term: 0, index: 0, type: e.type, data: e.data }));
  if (!r.appendEntries(fresh)) {
    dropped(local, 'too many uncommitted bytes (is quorum lost?)');
    return;
  }
  r.pendingConfIndex = confIndex;
  bcastAppend(r);
}

function respondReadIndex(r: Raft, to: NodeId, context: Uint8Array, index: number): void {
  if (to === r.id) r.readStates.push({ index, context });
  else r.send({ type: 'readIndexResponse', from: r.id, to, term: r.term, index, context });
}

function leaderReadIndex(r: Raft, from: NodeId, context: Uint8Array, local: boolean): void {
  if (r.tracker.isSingleton()) {
    respondReadIndex(r, from, context, r.log.committed);
    return;
  }
  // §6.4: the commit index is only known to be current once an entry of this term committed.
  if (!r.committedEntryInCurrentTerm()) {
    if (r.pendingReadIndex.length >= MAX_PENDING_READ_INDEX) {
      dropped(local, 'too many pending reads');
      return;
    }
    r.pendingReadIndex.push({ from, context });
    return;
  }
  sendReadIndex(r, from, context);
}

function sendReadIndex(r: Raft, from: NodeId, context: Uint8Array): void {
  if (r.config.readOnlyOption === 'leaseBased') {
    respondReadIndex(r, from, context, r.log.committed);
    return;
  }
  r.readOnly.addRequest(r.log.committed, from, context);
  r.readOnly.recvAck(r.id, context);
  bcastHeartbeat(r, context);
}

/** The leader's commit index moved: tell the followers and release reads waiting for this term. */
export function leaderCommitted(r: Raft): void {
  releasePendingReadIndex(r);
  bcastAppend(r);
}

function releasePendingReadIndex(r: Raft): void {
  if (!r.committedEntryInCurrentTerm()) return;
  const pending = r.pendingReadIndex;
  r.pendingReadIndex = [];
  for (const p of pending) sendReadIndex(r, p.from, p.context);
}

function leaderTransfer(r: Raft, target: NodeId): void {
  const pr = r.tracker.progress.get(target);
  if (pr === undefined || pr.isLearner) return;
  if (r.leadTransferee !== null) {
    if (r.leadTransferee === target) return;
    r.abortLeaderTransfer();
  }
  if (target === r.id) return;
  // The transfer must finish within one election timeout or it is abandoned.
  r.electionElapsed = 0;
  r.leadTransferee = target;
  if (pr.match === r.log.lastIndex()) sendTimeoutNow(r, target);
  else maybeSendAppend(r, target, true);
}

function leaderAppendResponse(r: Raft, m: Msg<'appendResponse'>): void {
  const pr = r.tracker.progress.get(m.from);
  if (pr === undefined) return;
  pr.recentActive = true;
  if (m.reject) {
    let nextProbe = m.rejectHint;
    if (m.logTerm > 0) nextProbe = r.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
    if (pr.maybeDecrTo(m.index, nextProbe)) {
      if (pr.state === 'replicate') pr.becomeProbe();
      maybeSendAppend(r, m.from, true);
    }
    return;
  }
  const oldPaused = pr.isPaused();
  const updated = pr.maybeUpdate(m.index);
  if (!updated && !(pr.match === m.index && pr.state === 'probe')) return;
  if (pr.state === 'probe') pr.becomeReplicate();
  else if (pr.state === 'snapshot' && pr.match + 1 >= r.log.firstIndex()) {
    pr.becomeProbe();
    pr.becomeReplicate();
  } else if (pr.state === 'replicate') pr.inflights.freeLE(m.index);
  if (r.maybeCommit()) {
    leaderCommitted(r);
  } else if (oldPaused) {
    maybeSendAppend(r, m.from, false);
  }
  for (let guard = 0; guard < 1024 && maybeSendAppend(r, m.from, false); guard++) {}
  if (m.from === r.leadTransferee && pr.match === r.log.lastIndex()) sendTimeoutNow(r, m.from);
}

function leaderHeartbeatResponse(r: Raft, m: Msg<'heartbeatResponse'>): void {
  const pr = r.tracker.progress.get(m.from);
  if (pr === undefined) return;
  pr.recentActive = true;
  // A heartbeat round trip proves the link works: resume a paused probe, and free one
  // inflight slot so a replicate stream whose acks were lost can discover the gap.
  if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
  if (pr.state !== 'snapshot') pr.msgAppFlowPaused = false;
  if (pr.match < r.log.lastIndex() || pr.state === 'probe') maybeSendAppend(r, m.from, true);
  if (r.config.readOnlyOption !== 'safe' || m.context.byteLength === 0) return;
  const acks = r.readOnly.recvAck(m.from, m.context);
  if (acks === undefined) return;
  const votes = new Map<NodeId, boolean>();
  for (const id of acks) votes.set(id, true);
  if (voteResult(r.tracker.voters, votes) !== 'won') return;
  for (const req of r.readOnly.advance(m.context)) respondReadIndex(r, req.from, req.context, req.index);
}

export function stepCandidate(r: Raft, m: RaftMessage): void {
  switch (m.type) {
    case 'append':
      r.becomeFollower(m.term, m.from);
      handleAppend(r, m);
      return;
    case 'heartbeat':
      r.becomeFollower(m.term, m.from);
      handleHeartbeat(r, m);
      return;
    case 'snapshot':
      r.becomeFollower(m.term, m.from);
      handleSnapshotChunk(r, m);
      return;
    case 'preVoteResponse':
    case 'voteResponse': {
      const mine = r.role === 'preCandidate' ? 'preVoteResponse' : 'voteResponse';
      if (m.type !== mine) return;
      r.tracker.recordVote(m.from, !m.reject);
      const result = r.tracker.tallyVotes();
      if (result === 'won') {
        if (r.role === 'preCandidate') r.campaign('election');
        else {
          r.becomeLeader();
          bcastAppend(r);
        }
      } else if (result === 'lost') {
        r.becomeFollower(r.term, null);
      }
      return;
    }
    default:
      return;
  }
}

export function stepFollower(r: Raft, m: RaftMessage): void {
  switch (m.type) {
    case 'append':
      r.electionElapsed = 0;
      r.lead = m.from;
      handleAppend(r, m);
      return;
    case 'heartbeat':
      r.electionElapsed = 0;
      r.lead = m.from;
      handleHeartbeat(r, m);
      return;
    case 'snapshot':
      r.electionElapsed = 0;
      r.lead = m.from;
      handleSnapshotChunk(r, m);
      return;
    case 'timeoutNow':
      // §3.10: the leader picked us; campaign now, bypassing pre-vote and leases.
      r.campaign('transfer');
      return;
    case 'readIndexResponse':
      r.readStates.push({ index: m.index, context: m.context });
      return;
    default:
      // Forwarded proposals, reads and transfers reaching a non-leader are dropped, not
      // re-forwarded: the sender retries, and nothing can bounce between followers.
      return;
  }
}

/** §5.2 / §9.6: answers a vote or pre-vote request whose term check already passed. */
export function handleVoteRequest(r: Raft, m: Msg<'preVote' | 'vote'>): void {
  // §5.2 one vote per term; a pre-vote for a future term may be granted freely.
  const canVote =
    r.vote === m.from || (r.vote === null && r.lead === null) || (m.type === 'preVote' && m.term > r.term);
  // §5.4.1 election restriction: only a candidate with an up-to-date log.
  if (canVote && r.log.isUpToDate(m.lastLogIndex, m.lastLogTerm)) {
    if (m.type === 'preVote') {
      r.send({ type: 'preVoteResponse', from: r.id, to: m.from, term: m.term, reject: false });
    } else {
      r.electionElapsed = 0;
      r.vote = m.from;
      r.send({ type: 'voteResponse', from: r.id, to: m.from, term: m.term, reject: false });
    }
  } else if (m.type === 'preVote') {
    r.send({ type: 'preVoteResponse', from: r.id, to: m.from, term: r.term, reject: true });
  } else {
    r.send({ type: 'voteResponse', from: r.id, to: m.from, term: r.term, reject: true });
  }
}
