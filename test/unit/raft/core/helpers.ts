import { MemoryStorage } from '../../../../controlplane/raft/core/memory-storage.js';
import type { Entry, NodeId, RaftMessage } from '../../../../controlplane/raft/core/types.js';
import { TestCluster, type TestClusterOptions } from '../../../../controlplane/raft/sim/cluster.js';

export { bytes, TestCluster } from '../../../../controlplane/raft/sim/cluster.js';

/** A storage whose log holds one entry per element of `terms` (index i+1 has terms[i]). */
export function storageWithLog(voters: NodeId[], terms: number[], currentTerm?: number): MemoryStorage {
  const s = new MemoryStorage({ voters, learners: [] });
  const entries: Entry[] = terms.map((term, i) => ({
    term,
    index: i + 1,
    type: 'normal',
    data: new TextEncoder().encode(`${term}/${i + 1}`),
  }));
  s.append(entries);
  s.setHardState({ term: currentTerm ?? Math.max(0, ...terms), vote: null, commit: 0 });
  return s;
}

/** A cluster whose nodes start from the given logs (node id -> entry terms). */
export function clusterWithLogs(
  logs: Record<NodeId, number[]>,
  options: TestClusterOptions = {},
): TestCluster {
  const voters = Object.keys(logs).sort();
  const c = new TestCluster(voters, options);
  for (const id of voters) {
    c.addNode(id, { voters, learners: [] }, storageWithLog(voters, logs[id]!));
  }
  return c;
}

export function logTerms(c: TestCluster, id: NodeId): number[] {
  const r = c.raft(id);
  const out: number[] = [];
  for (let i = r.log.firstIndex(); i <= r.log.lastIndex(); i++) out.push(r.log.termOrZero(i));
  return out;
}

export function ofType<T extends RaftMessage['type']>(
  messages: RaftMessage[],
  type: T,
): Extract<RaftMessage, { type: T }>[] {
  return messages.filter((m): m is Extract<RaftMessage, { type: T }> => m.type === type);
}

export const noPreVote = { config: { preVote: false, checkQuorum: false } };
