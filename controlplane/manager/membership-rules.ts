/** Small pure rules of the manager's Raft membership handling. */
import type { ConfState, NodeId } from '../raft/core/types.js';
import type { RaftNodeStatus } from '../raft/driver/raft-node.js';

/** Voter or learner of `confState`. */
export function isMember(confState: ConfState, id: NodeId): boolean {
  return confState.voters.includes(id) || confState.learners.includes(id);
}

/** The live voter with the longest log, to hand leadership to (undefined when none). */
export function transferTarget(s: RaftNodeStatus, self: NodeId): NodeId | undefined {
  let best: NodeId | undefined;
  let bestMatch = -1;
  for (const [id, pr] of Object.entries(s.progress ?? {})) {
    if (id === self || pr.isLearner || !pr.recentActive || !s.confState.voters.includes(id)) continue;
    if (pr.match > bestMatch) {
      best = id;
      bestMatch = pr.match;
    }
  }
  return best;
}
