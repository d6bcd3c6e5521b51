import { ValidationError } from '../../../src/common/errors.js';
import { decodeConfChange } from './conf-change.js';
import { quorumSize } from './quorum.js';
import type { Raft } from './raft.js';
import { bcastAppend, maybeSendAppend } from './replication.js';
import type { ConfChange, Entry } from './types.js';

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
  r.tracker.applyConfChange(change, r.log.lastIndex() + 1);
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
