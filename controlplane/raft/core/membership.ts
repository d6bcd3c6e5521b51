import { ValidationError } from '../../../src/common/errors.js';
import { decodeConfChange } from './conf-change.js';
import { quorumSize } from './quorum.js';
import type { Raft } from './raft.js';
import { bcastAppend, maybeSendAppend } from './replication.js';
import type { ConfChange, ConfState, Entry, NodeId, ProgressStatus, RaftRole } from './types.js';

/** Refuses a change that would leave the new configuration without a reachable quorum. */
export function checkConfChange(r: Raft, change: ConfChange): void {
  if (change.nodeId.length === 0)
    throw new ValidationError('confChange.nodeId', 'raft conf change: nodeId must not be empty');
  if (r.role !== 'leader') return;
  const voters = r.tracker.votersAfter(change);
  if (voters.size === 0) {
    throw new ValidationError(
      'confChange.nodeId',
      `raft conf change: removing ${change.nodeId} would leave no voters`,
    );
  }
  if (change.type === 'removeNode') {
    let active = 0;
    for (const id of voters) if (id === r.id || r.tracker.progress.get(id)?.recentActive) active++;
    if (active < quorumSize(voters.size)) {
      throw new ValidationError(
        'confChange.nodeId',
        `raft conf change: removing ${change.nodeId} would leave ${active} reachable of ${voters.size} voters, below quorum ${quorumSize(voters.size)}`,
      );
    }
  }
}

/** Applies a committed conf change entry (at advance time, once the caller applied it). */
export function applyConfChangeEntry(r: Raft, entry: Entry): void {
  let change: ConfChange;
  try {
    change = decodeConfChange(entry.data);
  } catch {
    return; // Validated when proposed; an undecodable entry is a no-op on every member alike.
  }
  if (r.role === 'leader' && change.type === 'removeNode' && change.nodeId !== r.id)
    tellRemovedNode(r, change.nodeId);
  r.tracker.applyConfChange(change, r.log.lastIndex() + 1);
  if (change.type === 'removeNode' && change.nodeId === r.id && r.role !== 'leader') {
    // Out of the configuration: no leader of ours any more, and promotable() is false
    // from now on, so this node never campaigns (it cannot disturb the rest).
    r.becomeFollower(r.term, null);
    return;
  }
  if (r.role !== 'leader') return;
  if (!r.tracker.voters.has(r.id)) {
    // A removed leader steps down; the commit of its removal was already broadcast
    // when it committed, and the remaining voters elect a leader among themselves.
    r.becomeFollower(r.term, null);
    return;
  }
  if (r.maybeCommit()) bcastAppend(r);
  else for (const id of r.tracker.progress.keys()) if (id !== r.id) maybeSendAppend(r, id, false);
  if (r.leadTransferee !== null && !r.tracker.voters.has(r.leadTransferee)) r.abortLeaderTransfer();
}

/**
 * A removed node stops hearing from the leader once its progress is gone, so
 * without this it would never commit (and apply) its own removal, and would
 * keep campaigning. One last heartbeat carries the commit index up to what it
 * matched, and one append the entries it misses (best effort: the others also
 * refuse its votes, see Raft.step).
 */
function tellRemovedNode(r: Raft, id: NodeId): void {
  const pr = r.tracker.progress.get(id);
  if (pr === undefined) return;
  maybeSendAppend(r, id, false);
  const commit = Math.min(pr.match, r.log.committed);
  r.send({ type: 'heartbeat', from: r.id, to: id, term: r.term, commit, context: new Uint8Array() });
}

/**
 * The learners a leader may promote to voters now (etcd's "learner is ready"):
 * heard from within the last election timeout, and their log within
 * `maxLagEntries` of the leader's commit index. Promoting a learner that lags
 * would make the quorum wait for it (and check-quorum could depose the leader).
 */
export function learnersReadyToPromote(view: PromotionView, maxLagEntries: number): NodeId[] {
  if (view.role !== 'leader' || view.progress === undefined) return [];
  const ready: NodeId[] = [];
  for (const id of view.confState.learners) {
    const pr = view.progress[id];
    if (pr === undefined || !pr.isLearner || !pr.recentActive) continue;
    if (pr.match + maxLagEntries >= view.commit) ready.push(id);
  }
  return ready.sort();
}

/** What the promotion rule reads: the driver's status has this shape. */
export interface PromotionView {
  role: RaftRole;
  commit: number;
  confState: ConfState;
  /** The leader's progress per member (absent on other roles). */
  progress?: Record<NodeId, ProgressStatus>;
}
