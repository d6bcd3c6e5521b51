import { NodeRole } from '../../src/api/gen/meshd/v1/objects.js';
import { type Clock, systemClock } from '../../src/common/clock.js';
import { errorMessage, MeshError } from '../../src/common/errors.js';
import { newId } from '../../src/common/ids.js';
import { subsystemLogger } from '../../src/common/logger.js';
import { learnersReadyToPromote } from '../raft/core/membership.js';
import { type ConfChange, type ConfState, type NodeId, ProposalDroppedError } from '../raft/core/types.js';
import { RaftNode, type RaftNodeOptions } from '../raft/driver/raft-node.js';
import { MemoryStore, type StoreLimits } from '../store/memory-store.js';
import type { StoreEvent, StoreView, WatchFilter } from '../store/types.js';
import { LeaderControlLoop } from './leader-loop.js';
import { isMember, transferTarget } from './membership-rules.js';
import { RaftProposer } from './raft-proposer.js';
import { StoreStateMachine } from './store-state-machine.js';

const log = subsystemLogger('manager');

/**
 * A learner is promoted once its log is within this many entries of the
 * leader's commit index: close enough that, as a voter, it acks the next
 * appends at once, yet reachable under a steady write load.
 */
export const LEARNER_PROMOTION_LAG_ENTRIES = 64;

export interface ManagerNodeOptions extends Omit<RaftNodeOptions, 'stateMachine' | 'clock'> {
  clock?: Clock;
  storeLimits?: Partial<StoreLimits>;
  /** IDs for objects the control loop creates (tasks); random by default. */
  newId?: () => string;
  /** The Raft address other managers reach this one at (default: the bound listen address). */
  raftAdvertiseAddress?: string;
  /** Run the allocator/scheduler/orchestrator while leader (default true; false for tests of Raft alone). */
  controlLoop?: boolean;
}

/** What readers of a manager's store get: reads and watches, never writes (those go through `proposer`). */
export interface ManagerStore extends StoreView {
  watch(filter: WatchFilter, fn: (event: StoreEvent) => void): () => void;
}

export type LeadershipListener = (isLeader: boolean, term: number) => void;

/**
 * The manager role: a Raft member whose state machine is the MemoryStore,
 * a Proposer that writes through Raft, and the leader-only control loop,
 * started when this manager becomes leader and stopped when it is not.
 * Leadership is observed by polling the driver's status every heartbeat
 * (the driver has no role callback; a poll bounds detection to one tick).
 */
export class ManagerNode {
  private loop: LeaderControlLoop | undefined;
  private leaderTerm = 0;
  private cancelPoll: () => void = () => undefined;
  private stopped = false;
  private leading = false;
  private readonly listeners = new Set<LeadershipListener>();
  private cancelMembershipWatch: () => void = () => undefined;
  private reconcilingMembership = false;

  private constructor(
    readonly raft: RaftNode,
    private readonly memoryStore: MemoryStore,
    private readonly stateMachine: StoreStateMachine,
    readonly proposer: RaftProposer,
    private readonly clock: Clock,
    private readonly opts: ManagerNodeOptions,
  ) {}

  static async start(options: ManagerNodeOptions): Promise<ManagerNode> {
    const clock = options.clock ?? systemClock;
    const store = new MemoryStore(options.storeLimits ?? {});
    const stateMachine = new StoreStateMachine(store);
    const {
      storeLimits: _limits,
      newId: _newId,
      controlLoop: _loop,
      raftAdvertiseAddress: _advertise,
      ...raftOptions
    } = options;
    const raft = await RaftNode.start({ ...raftOptions, stateMachine, clock });
    // Addresses replicated before the last snapshot are not replayed as conf changes.
    for (const [id, address] of stateMachine.members)
      if (id !== options.id && options.peers[id] === undefined) raft.addPeer(id, address);
    const proposer = new RaftProposer(raft, stateMachine, store.limits.maxTransactionBytes);
    const manager = new ManagerNode(raft, store, stateMachine, proposer, clock, options);
    manager.pollLeadership();
    return manager;
  }

  get id(): NodeId {
    return this.raft.id;
  }

  /** This manager's copy of the store (may lag the leader; see linearizableRead). */
  get store(): ManagerStore {
    return this.memoryStore;
  }

  /**
   * The replica itself, for components typed against MemoryStore (the
   * dispatcher). Read and watch it; never `apply()` to it: writes go through
   * `proposer`, or this replica diverges from the others.
   */
  replica(): MemoryStore {
    return this.memoryStore;
  }

  isLeader(): boolean {
    return this.raft.status().role === 'leader';
  }

  /** The current leader's Raft ID, or null during an election. */
  leaderId(): NodeId | null {
    return this.raft.status().lead;
  }

  /** Resolves once this manager's store holds every write committed before the call (ReadIndex). */
  async linearizableRead(): Promise<void> {
    await this.raft.linearizableRead();
  }

  /** Raft ID → address of every manager this one knows: itself, its configured peers, and replicated joins. */
  members(): Record<NodeId, string> {
    const self = this.opts.raftAdvertiseAddress ?? advertiseOf(this.opts.listenAddress, this.raft.port());
    return { ...this.opts.peers, ...Object.fromEntries(this.stateMachine.members), [this.id]: self };
  }

  /**
   * Adds `id` (already running at `raftAddress`, started without
   * `bootstrap`) as a Raft learner: it receives the log but neither votes
   * nor counts for commits, so a newcomer with an empty log cannot cost the
   * cluster its quorum or its leader. The leader promotes it to voter once
   * it has caught up (`promoteCaughtUpLearners`, every heartbeat). Leader
   * only (`NOT_LEADER` names the leader otherwise); idempotent. Resolves
   * with `members()` once the learner is in the configuration here.
   */
  async addLearner(id: NodeId, raftAddress: string, timeoutMs = 10_000): Promise<Record<NodeId, string>> {
    const context = Buffer.from(raftAddress, 'utf8');
    await this.changeMembership({ type: 'addLearner', nodeId: id, context }, timeoutMs, (c) =>
      isMember(c, id),
    );
    return this.members();
  }

  /**
   * `addLearner`, then waits until the leader promoted it to voter. Throws
   * `RAFT_CATCHING_UP` (it stays a learner, promoted later) after `timeoutMs`.
   */
  async addManager(id: NodeId, raftAddress: string, timeoutMs = 10_000): Promise<Record<NodeId, string>> {
    const deadline = this.clock.nowMs() + timeoutMs;
    await this.addLearner(id, raftAddress, timeoutMs);
    await this.waitForVoter(id, Math.max(0, deadline - this.clock.nowMs()));
    return this.members();
  }

  /** Resolves once `id` is a voter in this manager's applied configuration. */
  async waitForVoter(id: NodeId, timeoutMs: number): Promise<void> {
    try {
      await this.waitForMembership(timeoutMs, `manager ${id} to become a voter`, (c) =>
        c.voters.includes(id),
      );
    } catch (err) {
      if (!(err instanceof MeshError) || err.code !== 'RAFT_TIMEOUT') throw err;
      throw new MeshError(
        'RAFT_CATCHING_UP',
        `manager ${id} is a Raft learner still catching up after ${timeoutMs} ms; the leader makes it a voter once its log is within ${LEARNER_PROMOTION_LAG_ENTRIES} entries of the commit index`,
      );
    }
  }

  /** Removes `id` (voter or learner) from Raft (a demoted or removed manager). Leader only. */
  async removeManager(id: NodeId, timeoutMs = 10_000): Promise<void> {
    this.checkLeader();
    if (id === this.id)
      throw new MeshError(
        'FAILED_PRECONDITION',
        `manager ${id} is the leader; stop it (it hands over) and remove it from another manager`,
      );
    await this.changeMembership({ type: 'removeNode', nodeId: id }, timeoutMs, (c) => !isMember(c, id));
  }

  /**
   * Proposes `change` (leader only) until `done` holds for the applied
   * configuration. Raft refuses a change while another is pending, and a
   * new leader refuses any before its first entry is applied: those
   * refusals are waited out (one heartbeat each) within `timeoutMs`.
   */
  private async changeMembership(
    change: ConfChange,
    timeoutMs: number,
    done: (confState: ConfState) => boolean,
  ): Promise<void> {
    const what = `Raft conf change ${change.type} ${change.nodeId}`;
    const deadline = this.clock.nowMs() + timeoutMs;
    for (;;) {
      this.checkLeader();
      if (done(this.raft.status().confState)) return;
      try {
        this.raft.proposeConfChange(change);
        break;
      } catch (err) {
        if (!(err instanceof ProposalDroppedError) || this.clock.nowMs() > deadline) throw err;
      }
      await new Promise<void>((resolve) => this.clock.setTimer(this.opts.heartbeatMs ?? 100, resolve));
    }
    await this.waitForMembership(Math.max(0, deadline - this.clock.nowMs()), what, done);
  }

  /**
   * This manager's side of its own demotion. The leader removes a demoted
   * voter, and the removal must commit with this manager still answering
   * (in a 2-voter cluster its ack is half the quorum: stopping first left
   * the other voter unable to commit the removal or to win an election).
   * A leader cannot remove itself here, so it first hands leadership to the
   * most up-to-date live voter, then waits like any follower. Resolves true
   * once out of the configuration, false after `timeoutMs`.
   */
  async leaveRaft(timeoutMs = 15_000): Promise<boolean> {
    const deadline = this.clock.nowMs() + timeoutMs;
    while (this.clock.nowMs() <= deadline) {
      const s = this.raft.status();
      if (!isMember(s.confState, this.id)) return true;
      if (s.role === 'leader') {
        const to = transferTarget(s, this.id);
        if (to !== undefined) this.raft.transferLeader(to);
      }
      await new Promise<void>((resolve) => this.clock.setTimer(this.opts.heartbeatMs ?? 100, resolve));
    }
    return false;
  }

  /**
   * Leader side of `node demote`: a Raft member whose Node object says
   * worker leaves Raft (one change at a time; never this manager, which
   * hands leadership over in `leaveRaft`). Nodes without an object are
   * left alone (a manager not registered yet). Called on node changes and
   * every heartbeat: a change refused now (a new leader's first entry is
   * not applied yet, another change pending) is simply tried again.
   */
  private async reconcileMembership(): Promise<void> {
    if (this.reconcilingMembership || !this.leading || this.stopped) return;
    this.reconcilingMembership = true;
    try {
      const { voters, learners } = this.raft.status().confState;
      for (const id of [...voters, ...learners]) {
        if (id === this.id || this.memoryStore.get('node', id)?.role !== NodeRole.NODE_ROLE_WORKER) continue;
        log.info({ id }, 'node demoted to worker; removing it from Raft');
        await this.removeManager(id);
      }
    } catch (err) {
      log.debug({ err: errorMessage(err) }, 'membership change not possible now; retried next heartbeat');
    } finally {
      this.reconcilingMembership = false;
    }
  }

  /** Leader: a learner whose log caught up becomes a voter (one change at a time). */
  private promoteCaughtUpLearners(): void {
    if (!this.leading || this.stopped || this.reconcilingMembership) return;
    const status = this.raft.status();
    for (const id of learnersReadyToPromote(status, LEARNER_PROMOTION_LAG_ENTRIES)) {
      if (this.memoryStore.get('node', id)?.role === NodeRole.NODE_ROLE_WORKER) continue;
      try {
        this.raft.proposeConfChange({ type: 'addVoter', nodeId: id });
        log.info({ id, commit: status.commit }, 'learner caught up; promoting it to voter');
      } catch (err) {
        log.debug(
          { id, err: errorMessage(err) },
          'learner promotion not possible now; retried next heartbeat',
        );
      }
      return;
    }
  }

  private checkLeader(): void {
    const s = this.raft.status();
    if (s.role !== 'leader')
      throw new MeshError(
        'NOT_LEADER',
        `this manager (${this.id}) is not the Raft leader; the leader is ${s.lead ?? 'being elected'}`,
        {
          details: { leader: s.lead },
        },
      );
  }

  private async waitForMembership(
    timeoutMs: number,
    what: string,
    done: (confState: ConfState) => boolean,
  ): Promise<void> {
    const deadline = this.clock.nowMs() + timeoutMs;
    while (!done(this.raft.status().confState)) {
      if (this.clock.nowMs() > deadline)
        throw new MeshError('RAFT_TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => this.clock.setTimer(this.opts.heartbeatMs ?? 100, resolve));
    }
  }

  /** Called with (true, term) when this manager becomes leader and (false, term) when it stops being one. */
  onLeadershipChange(fn: LeadershipListener): () => void {
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
    };
  }

  /** Passes the control loop completed in the current leadership (0 when not leader). */
  controlLoopPasses(): number {
    return this.loop?.completedPasses ?? 0;
  }

  /** Stops the loop, then Raft (a leader hands leadership over first unless told not to). */
  async stop(opts: { transferLeadership?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.cancelPoll();
    this.setLeader(false, this.leaderTerm);
    this.cancelMembershipWatch();
    await this.raft.stop(opts);
  }

  private pollLeadership(): void {
    const everyMs = this.opts.heartbeatMs ?? 100;
    const tick = () => {
      if (this.stopped) return;
      let status: ReturnType<RaftNode['status']> | undefined;
      try {
        status = this.raft.status();
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'raft status unavailable');
      }
      if (status !== undefined) {
        const leading = status.role === 'leader';
        // A new term as leader (lost and won back between polls) is a new take-over.
        if (leading && this.leading && status.term !== this.leaderTerm)
          this.setLeader(false, this.leaderTerm);
        this.setLeader(leading, status.term);
        if (leading) {
          this.promoteCaughtUpLearners();
          void this.reconcileMembership();
        }
      }
      this.cancelPoll = this.clock.setTimer(everyMs, tick);
    };
    tick();
  }

  private setLeader(leading: boolean, term: number): void {
    if (leading === this.leading && (!leading || term === this.leaderTerm)) return;
    this.leading = leading;
    this.loop?.stop();
    this.loop = undefined;
    this.cancelMembershipWatch();
    this.cancelMembershipWatch = () => undefined;
    if (leading) {
      this.cancelMembershipWatch = this.memoryStore.watch({ kinds: ['node'] }, (event) => {
        if (event.type === 'object') void this.reconcileMembership();
      });
      void this.reconcileMembership();
      this.leaderTerm = term;
      log.info({ id: this.id, term }, 'became leader; starting the control loop');
      if (this.opts.controlLoop !== false) {
        this.loop = new LeaderControlLoop({
          store: this.memoryStore,
          proposer: this.proposer,
          clock: this.clock,
          newId: this.opts.newId ?? newId,
          barrier: () => this.raft.linearizableRead(),
        });
        this.loop.start();
      }
    } else {
      log.info({ id: this.id, term }, 'no longer leader; control loop stopped');
    }
    for (const fn of this.listeners) {
      try {
        fn(leading, term);
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'leadership listener failed');
      }
    }
  }
}

function advertiseOf(listenAddress: string, port: number): string {
  const host = listenAddress.slice(0, listenAddress.lastIndexOf(':'));
  return `${host === '' || host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`;
}
