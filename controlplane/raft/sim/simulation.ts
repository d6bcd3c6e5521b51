import { errorMessage } from '../../../src/common/errors.js';
import { SeededRng } from '../../../src/common/rng.js';
import { learnersReadyToPromote } from '../core/membership.js';
import { DEFAULT_RAFT_CONFIG, type RaftConfig, type RaftMessage } from '../core/types.js';
import { SafetyChecker } from './invariants.js';
import { encodeKvCommand } from './kv.js';
import { checkKvHistory, type KvOperation } from './linearizability/checker.js';
import { SimNetwork } from './network.js';
import { SimNode } from './sim-node.js';

export interface SimOptions {
  /** Virtual milliseconds of faulty operation, then a healed quiet phase. */
  faultyMs: number;
  quietMs: number;
  tickMs: number;
  clients: number;
  keys: string[];
}

export const DEFAULT_SIM_OPTIONS: SimOptions = {
  faultyMs: 6000,
  quietMs: 3000,
  tickMs: 10,
  clients: 4,
  keys: ['a', 'b', 'c'],
};

export interface SimResult {
  steps: number;
  violations: string[];
  stats: {
    operations: number;
    completed: number;
    leaders: number;
    crashes: number;
    snapshotsSent: number;
    confChanges: number;
    /** Learners promoted to voters once caught up. */
    promotions: number;
  };
}

interface PendingOp {
  op: KvOperation;
  opId: string;
  node: string;
  incarnation: number;
  deadline: number;
  /** For gets: the read index once the ReadState arrived. */
  readIndex?: number;
}

const CLIENT_TIMEOUT_MS = 400;
/** A learner this close to the leader's commit index is promoted (as the manager does, with a smaller bound). */
const LEARNER_LAG_ENTRIES = 16;

/**
 * One seed: a 3- or 5-manager cluster in virtual time with drops,
 * duplicates, delays (reorders), partitions, crashes that lose unsynced
 * writes, torn writes and restarts, while clients read and write a KV store.
 * Safety is checked after every step; at the end the network heals and the
 * cluster must make progress, converge, and the history must be linearizable.
 */
export function runRaftSimulation(seed: number, options: SimOptions = DEFAULT_SIM_OPTIONS): SimResult {
  const rng = new SeededRng(seed);
  const size = rng.next() < 0.6 ? 3 : 5;
  const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  const asyncLeaderAppend = rng.next() < 0.5;
  // Half the seeds write instantly; the others take 1–8 ms per Ready, stepping meanwhile.
  const diskLatencyMs = rng.next() < 0.5 ? 0 : 1 + rng.int(8);
  const config = (id: string): RaftConfig => ({
    ...DEFAULT_RAFT_CONFIG,
    id,
    electionTicks: 10,
    heartbeatTicks: 1,
    maxSizePerMsg: 4096,
    maxInflightMsgs: 8,
    snapshotChunkBytes: 256,
    asyncLeaderAppend,
  });
  const nodes = ids.map((id) => new SimNode(id, { voters: ids, learners: [] }, 30 + rng.int(30)));
  for (const n of nodes) n.start(config(n.id), rng.fork());
  // Each seed picks its own weather: from a clean LAN to a lossy, slow, duplicating one.
  const network = new SimNetwork(rng.fork(), {
    dropProbability: rng.next() * 0.15,
    duplicateProbability: rng.next() * 0.1,
    minDelay: 1,
    maxDelay: 5 + rng.int(56),
  });
  const checker = new SafetyChecker();
  const history: KvOperation[] = [];
  const pending = new Map<number, PendingOp>();
  const stats = {
    operations: 0,
    completed: 0,
    leaders: 0,
    crashes: 0,
    snapshotsSent: 0,
    confChanges: 0,
    promotions: 0,
  };
  let opSeq = 0;
  let finalWriteDone = false;

  const byId = new Map(nodes.map((n) => [n.id, n]));
  const finish = (client: number, output: string | null, now: number) => {
    const p = pending.get(client);
    if (p === undefined) return;
    p.op.output = output;
    p.op.returnTime = now;
    pending.delete(client);
    stats.completed++;
  };
  const hooks = {
    onAppend: (n: SimNode, entries: Parameters<SafetyChecker['onAppend']>[1]) => checker.onAppend(n, entries),
    onApply: (n: SimNode, e: Parameters<SafetyChecker['onApply']>[1]) => {
      checker.onApply(n, e);
      for (const [client, p] of pending) {
        if (p.op.input.kind === 'put' && p.node === n.id && e.data.byteLength > 0) {
          const text = new TextDecoder().decode(e.data);
          if (text.includes(`"opId":"${p.opId}"`)) finish(client, null, now);
        }
      }
    },
    onReadState: (n: SimNode, rs: { index: number; context: Uint8Array }) => {
      const ctx = new TextDecoder().decode(rs.context);
      for (const p of pending.values()) if (p.opId === ctx && p.node === n.id) p.readIndex = rs.index;
    },
  };

  const deliverOutput = (messages: RaftMessage[]) => {
    for (const m of messages) if (m.type === 'snapshot' && m.offset === 0) stats.snapshotsSent++;
    for (const e of network.send(now, messages)) {
      const sender = byId.get(e.from);
      if (e.isSnapshotStream) sender?.raft?.reportSnapshot(e.to, false);
    }
  };

  const startOp = (client: number) => {
    const live = nodes.filter((n) => n.alive);
    if (live.length === 0) return;
    const node = live[rng.int(live.length)]!;
    const key = options.keys[rng.int(options.keys.length)]!;
    const opId = `c${client}-${++opSeq}`;
    const isPut = rng.next() < 0.5;
    const op: KvOperation = {
      clientId: client,
      input: isPut ? { kind: 'put', key, value: opId } : { kind: 'get', key },
      output: null,
      callTime: now,
      returnTime: Number.POSITIVE_INFINITY,
    };
    try {
      if (isPut) node.raft!.propose(encodeKvCommand({ opId, key, value: opId }));
      else node.raft!.readIndex(new TextEncoder().encode(opId));
    } catch {
      return; // Refused synchronously (no leader, transfer): it never happened.
    }
    history.push(op);
    pending.set(client, {
      op,
      opId,
      node: node.id,
      incarnation: node.incarnation,
      deadline: now + CLIENT_TIMEOUT_MS,
    });
    stats.operations++;
  };

  let now = 0;
  let steps = 0;
  const endMs = options.faultyMs + options.quietMs;
  let exception: string | undefined;
  for (now = 0; now <= endMs && exception === undefined; now++) {
    try {
      steps++;
      checker.step = steps;
      const faulty = now < options.faultyMs;
      if (now === options.faultyMs) {
        // Heal everything: the cluster must now make progress.
        network.heal();
        network.faults = { dropProbability: 0, duplicateProbability: 0, minDelay: 1, maxDelay: 5 };
        for (const n of nodes) {
          // A torn crash armed during the faults must not strike after the heal.
          n.tornCrashPending = false;
          if (!n.alive) n.start(config(n.id), rng.fork());
        }
      }
      if (faulty && now % 100 === 0) injectFaults();
      if (faulty && rng.next() < 0.004) {
        // kill -9 and an immediate restart: whatever was not synced is gone.
        const live = nodes.filter((n) => n.alive);
        const victim = live[rng.int(Math.max(1, live.length))];
        if (victim !== undefined) {
          victim.crash();
          victim.start(config(victim.id), rng.fork());
          stats.crashes++;
        }
      }
      for (const e of network.due(now)) {
        const target = byId.get(e.to);
        const sender = byId.get(e.from);
        const lost = target?.raft === undefined || network.isCut(e.from, e.to);
        if (lost) {
          if (e.isSnapshotStream) sender?.raft?.reportSnapshot(e.to, false);
          else if (sender?.raft !== undefined && rng.next() < 0.3) sender.raft.reportUnreachable(e.to);
          continue;
        }
        for (const m of e.messages) target.raft!.step(m);
        if (e.isSnapshotStream) sender?.raft?.reportSnapshot(e.to, true);
      }
      if (now % options.tickMs === 0) for (const n of nodes) n.raft?.tick();
      for (const n of nodes) {
        if (!n.alive) continue;
        deliverOutput(n.handleReadies(now, diskLatencyMs, rng, hooks));
        n.maybeFlush(rng);
      }
      serveReads();
      expireOps();
      // Clients stop for the last second so followers can catch up before convergence is checked.
      const clientsActive = now < endMs - 1000;
      for (let client = 0; clientsActive && client < options.clients; client++) {
        if (!pending.has(client) && rng.next() < 0.05) startOp(client);
      }
      if (!faulty && !finalWriteDone) finalWriteDone = checkFinalWrite();
      checker.checkStep(nodes);
    } catch (err) {
      // A thrown assertion is a finding too: report it with the step so the seed replays.
      exception = `step ${steps}: exception: ${errorMessage(err)}`;
    }
  }
  if (exception !== undefined) return { steps, violations: [...checker.violations, exception], stats };
  stats.leaders = new Set(nodes.filter((n) => n.raft?.role === 'leader').map((n) => n.id)).size;

  const violations = [...checker.violations];
  if (!finalWriteDone) violations.push('progress after heal: no write committed in the quiet phase');
  const leader = nodes.find((n) => n.raft?.role === 'leader');
  if (leader === undefined) violations.push('progress after heal: no leader at the end');
  const leaderApplied = leader?.raft?.log.applied ?? 0;
  const caughtUp = nodes.filter((n) => n.raft?.log.applied === leaderApplied);
  const caughtUpStates = new Set(caughtUp.map((n) => JSON.stringify([...n.sm.values.entries()].sort())));
  if (caughtUpStates.size > 1)
    violations.push('convergence: nodes that applied the same index hold different states');
  if (leader !== undefined && caughtUp.length < quorumOf(leader.raft!.tracker.voters.size)) {
    violations.push(`convergence: only ${caughtUp.length} nodes caught up with the leader after heal`);
  }
  const lin = checkKvHistory(history);
  if (!lin.ok) violations.push(`linearizability: the history of key ${lin.failingKey} is not linearizable`);
  return { steps, violations, stats };

  function injectFaults(): void {
    const roll = rng.next();
    if (roll < 0.15) {
      const shuffled = [...ids].sort(() => rng.next() - 0.5);
      const cutAt = 1 + rng.int(ids.length - 1);
      network.partition([shuffled.slice(0, cutAt), shuffled.slice(cutAt)]);
    } else if (roll < 0.35) {
      network.heal();
    }
    const live = nodes.filter((n) => n.alive);
    const dead = nodes.filter((n) => !n.alive);
    const crashRoll = rng.next();
    if (crashRoll < 0.08 && live.length > 0) {
      const victim = live[rng.int(live.length)]!;
      stats.crashes++;
      if (rng.next() < 0.5) victim.tornCrashPending = true;
      else victim.crash();
    } else if (crashRoll < 0.25 && dead.length > 0) {
      const back = dead[rng.int(dead.length)]!;
      back.start(config(back.id), rng.fork());
    }
    const leaderNode = nodes.find((n) => n.raft?.role === 'leader');
    if (leaderNode === undefined) return;
    const leaderRaft = leaderNode.raft!;
    const membershipRoll = rng.next();
    if (membershipRoll < 0.05) {
      leaderRaft.transferLeader(ids[rng.int(ids.length)]!);
    } else if (membershipRoll < 0.1) {
      // Remove a voter (never below 3) or bring a removed one back; refusals are fine.
      const voters = [...leaderRaft.tracker.voters];
      const outside = ids.filter((id) => !leaderRaft.tracker.voters.has(id));
      try {
        if (outside.length > 0 && rng.next() < 0.6) {
          // As meshd does, most come back as learners (promoted below once caught up).
          const type = rng.next() < 0.7 ? 'addLearner' : 'addVoter';
          leaderRaft.proposeConfChange({ type, nodeId: outside[rng.int(outside.length)]! });
          stats.confChanges++;
        } else if (voters.length > 3) {
          leaderRaft.proposeConfChange({ type: 'removeNode', nodeId: voters[rng.int(voters.length)]! });
          stats.confChanges++;
        }
      } catch {
        // Pending change, new leader, or no reachable quorum after removal.
      }
    } else if (membershipRoll < 0.2) {
      const s = leaderRaft.status();
      const view = { role: s.softState.role, commit: s.hardState.commit, confState: s.confState };
      const ready = learnersReadyToPromote(
        s.progress === undefined ? view : { ...view, progress: s.progress },
        LEARNER_LAG_ENTRIES,
      );
      try {
        if (ready.length > 0) {
          leaderRaft.proposeConfChange({ type: 'addVoter', nodeId: ready[0]! });
          stats.confChanges++;
          stats.promotions++;
        }
      } catch {
        // Another change pending or a new leader: tried again later.
      }
    }
  }

  function serveReads(): void {
    for (const [client, p] of pending) {
      if (p.op.input.kind !== 'get' || p.readIndex === undefined) continue;
      const n = byId.get(p.node)!;
      if (!n.alive) continue;
      if (n.raft!.log.applied >= p.readIndex) finish(client, n.sm.values.get(p.op.input.key) ?? null, now);
    }
  }

  function expireOps(): void {
    for (const [client, p] of pending) {
      const n = byId.get(p.node)!;
      // A crashed node or a timeout leaves the outcome unknown: return time stays infinite.
      if (now >= p.deadline || !n.alive || n.incarnation !== p.incarnation) pending.delete(client);
    }
  }

  function checkFinalWrite(): boolean {
    return history.some(
      (op) =>
        op.input.kind === 'put' &&
        op.callTime >= options.faultyMs &&
        op.returnTime < Number.POSITIVE_INFINITY,
    );
  }
}

function quorumOf(voters: number): number {
  return Math.floor(voters / 2) + 1;
}
