import { randomBytes } from 'node:crypto';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { type Clock, systemClock } from '../../../src/common/clock.js';
import { errorMessage, MeshError } from '../../../src/common/errors.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import { SeededRng } from '../../../src/common/rng.js';
import { createRaftCore, decodeConfChange } from '../core/index.js';
import {
  type ConfChange,
  DEFAULT_RAFT_CONFIG,
  type Entry,
  type NodeId,
  type RaftConfig,
  type RaftCore,
  type RaftMessage,
  type RaftRole,
  type Ready,
} from '../core/types.js';
import { DiskStorage } from '../storage/disk-storage.js';
import { GrpcTransport } from '../transport/grpc-transport.js';
import { ProposalTagger, unwrap } from './envelope.js';
import { NodeStoppedError, type RaftNodeOptions, type RaftNodeStatus } from './options.js';
import { PendingRequests } from './pending.js';

export { NodeStoppedError, type RaftNodeOptions, type RaftNodeStatus, type StateMachine } from './options.js';

const log = subsystemLogger('raft-node');
/** Bound on held-back acks; dropping one only delays a commit (the follower re-acks). */
const MAX_HELD_ACKS = 16_384;

export class RaftNode {
  private readonly pending: PendingRequests;
  private readonly tagger = new ProposalTagger();
  private appliedIndex: number;
  private lastSnapshotIndex: number;
  private processing = false;
  private kickScheduled = false;
  private stopped = false;
  private cancelTick: () => void = () => undefined;
  private fatal: Error | undefined;
  private lastLead: NodeId | null = null;
  private role: RaftRole = 'follower';
  /** Followers' acks beyond this node's durable index, stepped once it catches up. */
  private heldAcks: RaftMessage[] = [];
  /** Last log index known durable on this node's disk. */
  private persistedIndex: number;
  /**
   * Peers removed by an applied conf change. They are dropped from the
   * transport only after the next Ready's messages went out: that Ready
   * carries the leader's last word to the removed node (its removal's commit).
   */
  private removedPeers: NodeId[] = [];

  private constructor(
    readonly id: NodeId,
    private readonly opts: Required<
      Pick<RaftNodeOptions, 'heartbeatMs' | 'electionMs' | 'requestTimeoutMs' | 'snapshotEveryEntries'>
    > &
      RaftNodeOptions,
    private readonly core: RaftCore,
    private readonly storage: DiskStorage,
    private readonly transport: GrpcTransport,
    private readonly clock: Clock,
  ) {
    this.pending = new PendingRequests(clock, opts.requestTimeoutMs);
    this.appliedIndex = storage.snapshot().metadata.index;
    this.lastSnapshotIndex = this.appliedIndex;
    this.persistedIndex = storage.lastIndex();
  }

  static async start(options: RaftNodeOptions): Promise<RaftNode> {
    const opts = {
      heartbeatMs: 100,
      electionMs: 1000,
      requestTimeoutMs: 10_000,
      snapshotEveryEntries: 10_000,
      ...options,
    };
    const clock = opts.clock ?? systemClock;
    const storage = await DiskStorage.open(opts.dataDir, {
      ...(opts.segmentBytes === undefined ? {} : { segmentBytes: opts.segmentBytes }),
      ...(opts.keepEntriesAfterSnapshot === undefined
        ? {}
        : { keepEntriesAfterSnapshot: opts.keepEntriesAfterSnapshot }),
      ...(opts.bootstrap ? { bootstrap: opts.bootstrap } : {}),
    });
    const snap = storage.snapshot();
    if (snap.data.byteLength > 0 || snap.metadata.index > 0) opts.stateMachine.restore(snap.data);
    const electionTicks = Math.max(2, Math.round(opts.electionMs / opts.heartbeatMs));
    const config: RaftConfig = {
      ...DEFAULT_RAFT_CONFIG,
      ...opts.core,
      id: opts.id,
      electionTicks,
      heartbeatTicks: 1,
      applied: snap.metadata.index,
    };
    // Election jitter must differ between managers, so the seed is random here.
    const core = createRaftCore(config, storage, new SeededRng(randomBytes(4).readUInt32LE(0)));
    let node: RaftNode | undefined;
    const transport = new GrpcTransport({
      selfId: opts.id,
      listenAddress: opts.listenAddress,
      serverCredentials: opts.serverCredentials,
      channelCredentials: opts.channelCredentials,
      ...(opts.tlsServerName === undefined ? {} : { tlsServerName: opts.tlsServerName }),
      peers: opts.peers,
      handler: {
        onMessage: (m) => node?.onPeerMessage(m),
        onUnreachable: (peer) => node?.core.reportUnreachable(peer),
        onSnapshotStatus: (peer, ok) => {
          node?.core.reportSnapshot(peer, ok);
          node?.kick();
        },
      },
    });
    node = new RaftNode(opts.id, opts, core, storage, transport, clock);
    await transport.start();
    node.scheduleTick();
    node.kick();
    log.info({ id: opts.id, port: transport.boundPort(), electionTicks }, 'raft node started');
    return node;
  }

  /** The port the Raft transport listens on. */
  port(): number {
    return this.transport.boundPort();
  }

  addPeer(id: NodeId, address: string): void {
    this.transport.addPeer(id, address);
  }

  /** New client credentials for every peer channel (after a certificate renewal). */
  setChannelCredentials(credentials: ChannelCredentials): void {
    this.transport.setChannelCredentials(credentials);
  }

  private scheduleTick(): void {
    this.cancelTick = this.clock.setTimer(this.opts.heartbeatMs, () => {
      if (this.stopped) return;
      this.core.tick();
      this.kick();
      this.scheduleTick();
    });
  }

  private onPeerMessage(m: RaftMessage): void {
    if (this.stopped) return;
    // See handleReady: a leader that replicates before its own write is
    // durable must not count a follower's ack beyond what it has persisted.
    if (m.type === 'appendResponse' && !m.reject && m.index > this.persistedIndex && this.role === 'leader') {
      if (this.heldAcks.length >= MAX_HELD_ACKS) this.heldAcks.shift();
      this.heldAcks.push(m);
      return;
    }
    this.core.step(m);
    this.kick();
  }

  private releaseHeldAcks(): void {
    if (this.heldAcks.length === 0) return;
    const still: RaftMessage[] = [];
    for (const m of this.heldAcks) {
      if (m.type === 'appendResponse' && m.index > this.persistedIndex) still.push(m);
      else this.core.step(m);
    }
    this.heldAcks = still;
  }

  /** Runs the Ready loop soon; many inputs in one turn share one Ready (group commit). */
  private kick(): void {
    if (this.kickScheduled || this.processing || this.stopped) return;
    this.kickScheduled = true;
    setImmediate(() => {
      this.kickScheduled = false;
      void this.processReadies();
    });
  }

  private async processReadies(): Promise<void> {
    if (this.processing || this.stopped) return;
    this.processing = true;
    try {
      while (!this.stopped && this.core.hasReady()) {
        const rd = this.core.ready();
        await this.handleReady(rd);
        this.core.advance();
        await this.maybeSnapshot();
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.processing = false;
    }
    if (!this.stopped && this.core.hasReady()) this.kick();
  }

  private async handleReady(rd: Ready): Promise<void> {
    const removedBefore = this.removedPeers;
    this.removedPeers = [];
    if (rd.softState !== undefined) {
      log.info({ id: this.id, ...rd.softState }, 'raft role changed');
      if (rd.softState.lead !== this.lastLead) this.onLeaderChange(this.lastLead, rd.softState.lead);
      this.lastLead = rd.softState.lead;
      this.role = rd.softState.role;
    }
    // Committed entries already durable here can be applied while the new
    // entries are being written: commitment already means a durable quorum,
    // and this saves one fdatasync of latency per commit on the leader.
    let early = 0;
    if (rd.snapshot === undefined) {
      while (early < rd.committedEntries.length && rd.committedEntries[early]!.index <= this.persistedIndex) {
        this.applyEntry(rd.committedEntries[early]!);
        early += 1;
      }
    }
    // Raft thesis §10.2.1: a leader may replicate in parallel with its own
    // log write. Safe here because (1) a Ready whose term or vote changed,
    // or that carries a snapshot, still persists first (votes and acks
    // promise durable state), and (2) followers' acks above this node's
    // durable index are held back (onPeerMessage), so the core's commit
    // index never counts an entry the leader could still lose in a crash.
    const sendFirst = this.role === 'leader' && rd.snapshot === undefined && !this.termOrVoteChanges(rd);
    if (sendFirst) this.transport.send(rd.messages);
    await this.storage.saveReady(rd);
    this.persistedIndex = this.storage.lastIndex();
    this.releaseHeldAcks();
    if (this.stopped) return;
    if (!sendFirst) this.transport.send(rd.messages);
    for (const id of removedBefore) this.transport.removePeer(id);
    if (rd.snapshot !== undefined) {
      this.opts.stateMachine.restore(rd.snapshot.data);
      this.appliedIndex = rd.snapshot.metadata.index;
      this.lastSnapshotIndex = rd.snapshot.metadata.index;
    }
    for (let i = early; i < rd.committedEntries.length; i++) this.applyEntry(rd.committedEntries[i]!);
    for (const rs of rd.readStates) {
      this.pending.readStateArrived(Buffer.from(rs.context).toString('hex'), rs.index, this.appliedIndex);
    }
    this.pending.applied(this.appliedIndex);
  }

  private termOrVoteChanges(rd: Ready): boolean {
    if (rd.hardState === undefined) return false;
    const durable = this.storage.currentHardState();
    return rd.hardState.term !== durable.term || rd.hardState.vote !== durable.vote;
  }

  /**
   * Proposals and reads forwarded to a leader that is gone would otherwise
   * wait for their timeout. Fail them at once as "outcome unknown" so
   * clients retry against the new leader (failover time is what they see).
   */
  private onLeaderChange(from: NodeId | null, to: NodeId | null): void {
    if (from === null) return;
    const err = new MeshError(
      'RAFT_LEADER_CHANGED',
      `raft leader changed from ${from} to ${to ?? 'none'} while the request was pending; a proposal may still commit`,
    );
    this.pending.failInFlight(err);
  }

  private applyEntry(e: Entry): void {
    if (e.index <= this.appliedIndex) return;
    this.appliedIndex = e.index;
    if (e.type === 'confChange') {
      const change = decodeConfChange(e.data);
      if (change.type === 'removeNode') {
        if (change.nodeId !== this.id) this.removedPeers.push(change.nodeId);
        else
          log.warn(
            { id: this.id },
            'this node was removed from the Raft configuration; it no longer campaigns',
          );
      } else {
        this.removedPeers = this.removedPeers.filter((id) => id !== change.nodeId);
        this.transport.readmitPeer(change.nodeId);
        if (change.context !== undefined && change.context.byteLength > 0) {
          this.transport.addPeer(change.nodeId, Buffer.from(change.context).toString('utf8'));
        }
      }
      this.opts.stateMachine.onConfChange?.(change, e.index);
      return;
    }
    const unwrapped = unwrap(e.data);
    if (unwrapped === undefined) return;
    this.opts.stateMachine.apply(e.index, unwrapped.payload);
    this.pending.proposalApplied(unwrapped.key, e.index);
  }

  private async maybeSnapshot(): Promise<void> {
    if (this.appliedIndex - this.lastSnapshotIndex < this.opts.snapshotEveryEntries) return;
    const index = this.appliedIndex;
    const data = this.opts.stateMachine.snapshot();
    await this.storage.createSnapshot(index, this.core.status().confState, data);
    this.lastSnapshotIndex = index;
  }

  /** Resolves with the entry's index once it is committed and applied here. */
  async propose(payload: Uint8Array): Promise<{ index: number }> {
    this.checkRunning();
    const { key, data } = this.tagger.wrap(payload);
    const done = this.pending.waitProposal(key);
    try {
      this.core.propose(data);
    } catch (err) {
      this.pending.failProposal(key, err instanceof Error ? err : new Error(String(err)));
    }
    this.kick();
    return { index: await done };
  }

  /** A barrier: resolves once this node has applied everything committed before the call. */
  async linearizableRead(): Promise<{ index: number }> {
    this.checkRunning();
    const context = randomBytes(16);
    const key = context.toString('hex');
    const done = this.pending.waitRead(key);
    try {
      this.core.readIndex(context);
    } catch (err) {
      this.pending.failRead(key, err instanceof Error ? err : new Error(String(err)));
    }
    this.kick();
    return { index: await done };
  }

  proposeConfChange(change: ConfChange): void {
    this.checkRunning();
    this.core.proposeConfChange(change);
    this.kick();
  }

  transferLeader(to: NodeId): void {
    this.core.transferLeader(to);
    this.kick();
  }

  campaign(): void {
    this.core.campaign();
    this.kick();
  }

  status(): RaftNodeStatus {
    const s = this.core.status();
    return {
      id: this.id,
      role: s.softState.role,
      term: s.hardState.term,
      lead: s.softState.lead,
      commit: s.hardState.commit,
      applied: this.appliedIndex,
      lastIndex: this.storage.lastIndex(),
      confState: s.confState,
      ...(s.progress === undefined ? {} : { progress: s.progress }),
    };
  }

  /** WAL group-commit counters: fdatasync calls, their total time, bytes written. */
  walCounters(): { syncs: number; syncMs: number; bytes: number } {
    return this.storage.walCounters();
  }

  /** Committed entries currently in the log (index, term, type, data), for checks and tools. */
  committedEntries(): Entry[] {
    const first = this.storage.firstIndex();
    const commit = Math.min(this.core.status().hardState.commit, this.storage.lastIndex());
    if (commit < first) return [];
    return this.storage.entries(first, commit + 1, Number.MAX_SAFE_INTEGER);
  }

  private checkRunning(): void {
    if (this.fatal !== undefined) throw this.fatal;
    if (this.stopped) throw new NodeStoppedError(this.id);
  }

  private fail(err: unknown): void {
    this.fatal = err instanceof Error ? err : new Error(String(err));
    log.fatal({ id: this.id, err: errorMessage(err) }, 'raft node stopping after a storage failure');
    const fatal = this.fatal;
    void this.stop({ transferLeadership: false }).finally(() => this.opts.onFatal?.(fatal));
  }

  /**
   * Stops the node. A leader first hands leadership to its most up-to-date
   * follower (TimeoutNow), so the cluster does not wait an election timeout.
   */
  async stop(opts: { transferLeadership?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    if (opts.transferLeadership !== false && this.fatal === undefined) await this.handOffLeadership();
    this.stopped = true;
    this.cancelTick();
    this.pending.failAll(this.fatal ?? new NodeStoppedError(this.id));
    while (this.processing) await new Promise((r) => setTimeout(r, 1));
    await this.transport.close();
    await this.storage.close();
  }

  private async handOffLeadership(): Promise<void> {
    const s = this.core.status();
    if (s.softState.role !== 'leader' || s.progress === undefined) return;
    let best: NodeId | undefined;
    let bestMatch = -1;
    for (const [id, pr] of Object.entries(s.progress)) {
      if (id === this.id || pr.isLearner || !pr.recentActive) continue;
      if (pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    if (best === undefined) return;
    this.transferLeader(best);
    const deadline = Date.now() + this.opts.electionMs;
    while (Date.now() < deadline && this.core.status().softState.lead === this.id) {
      await new Promise((r) => setTimeout(r, 10));
    }
    log.info(
      { id: this.id, to: best, lead: this.core.status().softState.lead },
      'leadership handed off before stop',
    );
  }
}
