import type { Raft } from './raft.js';
import type { RaftStatus } from './types.js';

/** A snapshot of the core's state for the driver's status() and for tests. */
export function raftStatus(r: Raft): RaftStatus {
  const status: RaftStatus = {
    id: r.id,
    hardState: r.hardState(),
    softState: r.softState(),
    applied: r.log.applied,
    confState: r.tracker.confState(),
    leadTransferee: r.leadTransferee,
  };
  if (r.role === 'leader') {
    status.progress = {};
    for (const [id, pr] of r.tracker.progress) status.progress[id] = pr.status();
  }
  return status;
}
