import type { Rng } from '../../src/common/rng.js';

/**
 * Node liveness, pure: time is passed in, randomness comes from an Rng.
 *
 * Period: `basePeriodMs` on a small cluster, stretched so the leader handles
 * at most `maxHeartbeatsPerSecond` whatever the cluster size. Each period
 * handed to a node is jittered downwards (by up to `jitterFraction`) so nodes
 * that started together do not beat together, and a node is never late for
 * its own deadline because of jitter.
 *
 * Deadline: a node is down when no heartbeat came for `graceMultiplier`
 * periods. With the defaults (1.5 s × 3) a dead node is declared down 4.5 s
 * after its last heartbeat, within the 6 s goal; swarm's defaults take ~15 s.
 *
 * Leader change: the new leader has heard from nobody. Every known node gets
 * `unknownGraceMs` to reconnect before it can be declared down, so a failover
 * does not reschedule the whole cluster (swarm's UNKNOWN state).
 */
export interface HeartbeatPolicy {
  basePeriodMs: number;
  graceMultiplier: number;
  maxHeartbeatsPerSecond: number;
  jitterFraction: number;
  unknownGraceMs: number;
}

export const DEFAULT_HEARTBEAT_POLICY: HeartbeatPolicy = {
  basePeriodMs: 1500,
  graceMultiplier: 3,
  maxHeartbeatsPerSecond: 500,
  jitterFraction: 0.25,
  unknownGraceMs: 10_000,
};

export function heartbeatPeriodMs(
  nodeCount: number,
  policy: HeartbeatPolicy = DEFAULT_HEARTBEAT_POLICY,
): number {
  const loadBoundMs = Math.ceil((Math.max(0, nodeCount) * 1000) / policy.maxHeartbeatsPerSecond);
  return Math.max(policy.basePeriodMs, loadBoundMs);
}

export function jitteredPeriodMs(
  periodMs: number,
  rng: Rng,
  policy: HeartbeatPolicy = DEFAULT_HEARTBEAT_POLICY,
): number {
  return Math.round(periodMs * (1 - policy.jitterFraction * rng.next()));
}

export type Liveness = 'ready' | 'unknown';

interface NodeDeadline {
  deadlineMs: number;
  liveness: Liveness;
}

export class LivenessTracker {
  private readonly deadlines = new Map<string, NodeDeadline>();

  constructor(private readonly policy: HeartbeatPolicy = DEFAULT_HEARTBEAT_POLICY) {}

  /** This manager became leader at `nowMs`: every known node is UNKNOWN until it beats. */
  startLeadership(nodeIds: Iterable<string>, nowMs: number): void {
    this.deadlines.clear();
    for (const id of nodeIds)
      this.deadlines.set(id, { deadlineMs: nowMs + this.policy.unknownGraceMs, liveness: 'unknown' });
  }

  heartbeat(nodeId: string, nowMs: number, periodMs: number): void {
    this.deadlines.set(nodeId, {
      deadlineMs: nowMs + periodMs * this.policy.graceMultiplier,
      liveness: 'ready',
    });
  }

  /** The node left or was removed: stop tracking it. */
  forget(nodeId: string): void {
    this.deadlines.delete(nodeId);
  }

  liveness(nodeId: string): Liveness | undefined {
    return this.deadlines.get(nodeId)?.liveness;
  }

  /** Nodes whose deadline passed; they are forgotten here and must be marked down by the caller. */
  takeExpired(nowMs: number): string[] {
    const expired: string[] = [];
    for (const [id, d] of this.deadlines) if (d.deadlineMs <= nowMs) expired.push(id);
    for (const id of expired) this.deadlines.delete(id);
    return expired.sort();
  }

  /** Earliest deadline, for the shell's next timer. */
  nextDeadlineMs(): number | undefined {
    let next: number | undefined;
    for (const d of this.deadlines.values())
      if (next === undefined || d.deadlineMs < next) next = d.deadlineMs;
    return next;
  }
}
