import { randomInt } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import {
  AssignmentsKind,
  type AssignmentsRequest,
  type AssignmentsResponse,
  type DispatcherServiceServer,
  DispatcherServiceService,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type ManagerAddress,
  type SessionRequest,
  type SessionResponse,
  type TaskStatusUpdate,
  type UpdateTaskStatusRequest,
  type UpdateTaskStatusResponse,
} from '../../src/api/gen/meshd/v1/dispatcher.js';
import {
  Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  type Task,
} from '../../src/api/gen/meshd/v1/objects.js';
import { type Clock, systemClock } from '../../src/common/clock.js';
import { errorMessage, MeshError } from '../../src/common/errors.js';
import { newId } from '../../src/common/ids.js';
import { type Logger, subsystemLogger } from '../../src/common/logger.js';
import type { Rng } from '../../src/common/rng.js';
import { callerIdentity, servicePolicy } from '../../src/common/transport/authorization.js';
import type { Proposer } from '../store/proposer.js';
import { TransactionBuilder } from '../store/transaction.js';
import type { StoreEvent, StoreView, WatchFilter } from '../store/types.js';
import { clusterViewOf, desiredStateForNode } from './assignments.js';
import { diffDesiredState, isEmptyDelta } from './delta.js';
import {
  DEFAULT_HEARTBEAT_POLICY,
  type HeartbeatPolicy,
  heartbeatPeriodMs,
  jitteredPeriodMs,
  LivenessTracker,
} from './heartbeat.js';
import { StatusBatcher } from './status-batcher.js';
import { decideStatusUpdate, diffTaskLists, tasksForNode } from './task-updates.js';
import { validateSessionRequest, validateStatusRequest } from './validate.js';

/** Every dispatcher method needs a node certificate of this cluster; the CN is the node ID. */
export const DISPATCHER_POLICY = servicePolicy(DispatcherServiceService, {
  session: 'node',
  heartbeat: 'node',
  assignments: 'node',
  updateTaskStatus: 'node',
});

/** What the dispatcher reads: a MemoryStore, or the manager's replica (`ManagerNode.store`). */
export interface DispatcherStore extends StoreView {
  watch(filter: WatchFilter, fn: (event: StoreEvent) => void): () => void;
}

export interface DispatcherOptions {
  /** The local replica: read for assignments, watched for increments. */
  store: DispatcherStore;
  /** Writes (node registration and DOWN, task status) go through it. */
  proposer: Proposer;
  clock?: Clock;
  rng?: Rng;
  policy?: HeartbeatPolicy;
  /** On a follower: the leader's dispatcher address (host:port), sent to agents with UNAVAILABLE. */
  leaderAddress?: () => string | undefined;
  /** The managers a node may fail over to, sent when a session opens. */
  managers?: () => ManagerAddress[];
  /** Delay that coalesces store changes into one increment per session. */
  assignmentsCoalesceMs?: number;
  /** Messages a slow session may have unsent before it is closed (it reconnects and gets COMPLETE). */
  maxPendingAssignments?: number;
  statusBatchDelayMs?: number;
  maxStatusBatch?: number;
  logger?: Logger;
}

interface SessionState {
  id: string;
  nodeId: string;
  call: grpc.ServerWritableStream<SessionRequest, SessionResponse>;
  assignments: Set<AssignmentStream>;
}

interface AssignmentStream {
  call: grpc.ServerWritableStream<AssignmentsRequest, AssignmentsResponse>;
  lastState: DesiredState;
  lastTasks: Task[];
  pending: number;
}

const cryptoRng: Rng = {
  next: () => randomInt(0, 2 ** 32) / 2 ** 32,
  int: (bound) => randomInt(0, bound),
  intBetween: (min, max) => randomInt(min, max + 1),
  fork: () => cryptoRng,
};

/**
 * The dispatcher gRPC service (the shell around the pure modules next to it).
 * Runs on the leader: `start()` when it gains leadership, `stop()` when it
 * loses it; while stopped every call answers UNAVAILABLE so agents fail over.
 */
export class Dispatcher {
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly policy: HeartbeatPolicy;
  private readonly log: Logger;
  private liveness: LivenessTracker;
  private readonly sessions = new Map<string, SessionState>();
  private readonly markingReady = new Set<string>();
  private lastManagersKey: string | undefined;
  private readonly batcher: StatusBatcher;
  private running = false;
  private cancelWatch: (() => void) | undefined;
  private cancelExpiry: (() => void) | undefined;
  private cancelCoalesce: (() => void) | undefined;

  constructor(private readonly opts: DispatcherOptions) {
    this.clock = opts.clock ?? systemClock;
    this.rng = opts.rng ?? cryptoRng;
    this.policy = opts.policy ?? DEFAULT_HEARTBEAT_POLICY;
    this.log = opts.logger ?? subsystemLogger('dispatcher');
    this.liveness = new LivenessTracker(this.policy);
    this.batcher = new StatusBatcher({
      store: opts.store,
      proposer: opts.proposer,
      clock: this.clock,
      delayMs: opts.statusBatchDelayMs ?? 50,
      maxBatch: opts.maxStatusBatch ?? 200,
      log: this.log,
    });
  }

  /** This manager is the leader: known nodes get the UNKNOWN grace to reconnect. */
  start(): void {
    if (this.running) return;
    this.running = true;
    // A leader that lost and regained leadership in one process (a term change
    // under load) left its batcher stopped: every status report was refused and
    // tasks stayed ASSIGNED for ever.
    this.batcher.start();
    const known = this.opts.store
      .list('node')
      .filter((n) => n.state !== NodeState.NODE_STATE_DOWN)
      .map((n) => n.meta?.id ?? '');
    // The cluster's own setting wins (ClusterSpec.unknown_grace_ms), so the
    // dispatcher and the orchestrator wait the same time before acting.
    const graceMs = Number(this.opts.store.list('cluster')[0]?.spec?.unknownGraceMs ?? 0);
    this.liveness = new LivenessTracker(
      graceMs > 0 ? { ...this.policy, unknownGraceMs: graceMs } : this.policy,
    );
    this.liveness.startLeadership(known, this.clock.nowMs());
    this.cancelWatch = this.opts.store.watch({}, (e) => {
      if (e.type !== 'object') this.scheduleAssignments();
    });
    this.armExpiry();
  }

  /** Lost leadership or shutting down: every session ends UNAVAILABLE. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.cancelWatch?.();
    this.cancelExpiry?.();
    this.cancelCoalesce?.();
    this.cancelCoalesce = undefined;
    for (const s of [...this.sessions.values()]) this.endSession(s, 'this manager stopped dispatching');
    this.batcher.stop();
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  implementation(): DispatcherServiceServer {
    return {
      session: (call) => this.openSession(call),
      heartbeat: (call, cb) => cb(...this.heartbeat(call)),
      assignments: (call) => this.openAssignments(call),
      updateTaskStatus: (call, cb) => {
        this.updateTaskStatus(call).then(
          (res) => cb(null, res),
          (err: unknown) => cb(toServiceError(err)),
        );
      },
    };
  }

  private caller(
    call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>,
  ): { nodeId: string; role: NodeRole } | undefined {
    const id = callerIdentity(call);
    if (id === undefined) return undefined;
    return {
      nodeId: id.nodeId,
      role: id.role === 'manager' ? NodeRole.NODE_ROLE_MANAGER : NodeRole.NODE_ROLE_WORKER,
    };
  }

  private openSession(call: grpc.ServerWritableStream<SessionRequest, SessionResponse>): void {
    const who = this.caller(call);
    if (!this.running) {
      failStream(call, this.unavailable());
      return;
    }
    if (who === undefined) {
      failStream(call, serviceError(grpc.status.UNAUTHENTICATED, 'Session: no node certificate'));
      return;
    }
    try {
      validateSessionRequest(call.request);
    } catch (err) {
      failStream(call, serviceError(grpc.status.INVALID_ARGUMENT, `Session: ${errorMessage(err)}`));
      return;
    }
    const previous = this.sessions.get(who.nodeId);
    if (previous !== undefined) this.endSession(previous, 'replaced by a newer session of the same node');
    const session: SessionState = { id: newId(), nodeId: who.nodeId, call, assignments: new Set() };
    this.sessions.set(who.nodeId, session);
    call.on('cancelled', () => this.dropSession(session));
    call.on('close', () => this.dropSession(session));
    const periodMs = this.periodMs();
    this.liveness.heartbeat(who.nodeId, this.clock.nowMs(), periodMs);
    this.armExpiry();
    this.registerNode(who.nodeId, who.role, call.request).then(
      () => {
        if (this.sessions.get(who.nodeId) !== session) return;
        call.write({
          sessionId: session.id,
          nodeId: who.nodeId,
          managers: this.opts.managers?.() ?? [],
          heartbeatPeriodMs: jitteredPeriodMs(periodMs, this.rng, this.policy),
        });
        this.log.info({ nodeId: who.nodeId, sessionId: session.id }, 'session opened');
      },
      (err: unknown) => {
        this.log.warn({ nodeId: who.nodeId, err: errorMessage(err) }, 'node registration failed');
        this.sessions.delete(who.nodeId);
        failStream(call, toServiceError(err));
      },
    );
  }

  private dropSession(session: SessionState): void {
    if (this.sessions.get(session.nodeId) !== session) return;
    this.sessions.delete(session.nodeId);
    for (const a of session.assignments)
      failStream(a.call, serviceError(grpc.status.UNAVAILABLE, 'the session of this node ended'));
    session.assignments.clear();
  }

  private endSession(session: SessionState, why: string): void {
    this.dropSession(session);
    failStream(session.call, serviceError(grpc.status.UNAVAILABLE, `session ended: ${why}`));
  }

  private sessionOf(
    call:
      | grpc.ServerUnaryCall<{ sessionId: string }, unknown>
      | grpc.ServerWritableStream<{ sessionId: string }, unknown>,
  ): SessionState | grpc.ServiceError {
    if (!this.running) return this.unavailable();
    const who = this.caller(call);
    if (who === undefined) return serviceError(grpc.status.UNAUTHENTICATED, 'no node certificate');
    const s = this.sessions.get(who.nodeId);
    if (s === undefined || s.id !== call.request.sessionId)
      return serviceError(
        grpc.status.NOT_FOUND,
        `session_id "${call.request.sessionId}" is not the current session of node ${who.nodeId}; open a new session`,
      );
    return s;
  }

  private heartbeat(
    call: grpc.ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>,
  ): [grpc.ServiceError | null, HeartbeatResponse?] {
    const s = this.sessionOf(call);
    if (s instanceof Error) return [s];
    const periodMs = this.periodMs();
    this.liveness.heartbeat(s.nodeId, this.clock.nowMs(), periodMs);
    this.armExpiry();
    // A new leader marks every node UNKNOWN; that write may land after this
    // node's session brought it back READY. A live session repairs it.
    if (this.opts.store.get('node', s.nodeId)?.state !== NodeState.NODE_STATE_READY) this.markReady(s.nodeId);
    return [null, { periodMs: jitteredPeriodMs(periodMs, this.rng, this.policy) }];
  }

  /** A follower points the agent at the leader, so an agent that knows one manager finds the leader. */
  private unavailable(): grpc.ServiceError {
    const leader = this.opts.leaderAddress?.();
    const err = serviceError(
      grpc.status.UNAVAILABLE,
      leader === undefined || leader === ''
        ? 'this manager is not dispatching (not the leader); try another manager'
        : `this manager is not the leader; the leader dispatches at ${leader}`,
    );
    if (leader !== undefined && leader !== '') err.metadata.set(LEADER_METADATA_KEY, leader);
    return err;
  }

  private markReady(nodeId: string): void {
    if (this.markingReady.has(nodeId)) return;
    this.markingReady.add(nodeId);
    this.updateNode(nodeId, (n) => {
      if (n.state === NodeState.NODE_STATE_READY) return false;
      n.state = NodeState.NODE_STATE_READY;
      n.statusMessage = '';
      n.stateChangedAt = { unixMs: this.clock.nowMs() };
      return true;
    })
      .catch((err: unknown) => this.log.warn({ nodeId, err: errorMessage(err) }, 'marking node ready failed'))
      .finally(() => this.markingReady.delete(nodeId));
  }

  private periodMs(): number {
    return heartbeatPeriodMs(this.opts.store.list('node').length, this.policy);
  }

  private armExpiry(): void {
    this.cancelExpiry?.();
    this.cancelExpiry = undefined;
    if (!this.running) return;
    const next = this.liveness.nextDeadlineMs();
    if (next === undefined) return;
    this.cancelExpiry = this.clock.setTimer(Math.max(0, next - this.clock.nowMs()), () => {
      this.cancelExpiry = undefined;
      for (const nodeId of this.liveness.takeExpired(this.clock.nowMs())) this.declareDown(nodeId);
      this.armExpiry();
    });
  }

  private declareDown(nodeId: string): void {
    const s = this.sessions.get(nodeId);
    if (s !== undefined) this.endSession(s, 'heartbeat deadline passed');
    this.log.warn({ nodeId }, 'node missed its heartbeats; marking it down');
    void this.updateNode(nodeId, (n) => {
      if (n.state === NodeState.NODE_STATE_DOWN) return false;
      n.state = NodeState.NODE_STATE_DOWN;
      n.statusMessage = 'heartbeat failure';
      n.stateChangedAt = { unixMs: this.clock.nowMs() };
      return true;
    }).catch((err: unknown) => this.log.warn({ nodeId, err: errorMessage(err) }, 'marking node down failed'));
  }

  /** Creates the node on its first session, or brings it back READY with what it reports. */
  private async registerNode(nodeId: string, role: NodeRole, req: SessionRequest): Promise<void> {
    const nowMs = this.clock.nowMs();
    if (this.opts.store.get('node', nodeId) === undefined) {
      const node = Node.fromPartial({
        meta: { id: nodeId },
        hostname: req.hostname,
        role,
        availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
        labels: req.labels,
        resources: req.resources,
        addresses: req.addresses,
        state: NodeState.NODE_STATE_READY,
        stateChangedAt: { unixMs: nowMs },
      });
      try {
        await this.opts.proposer.propose(new TransactionBuilder(nowMs).create('node', node).build());
        return;
      } catch (err) {
        if (!(err instanceof MeshError && err.code === 'ALREADY_EXISTS')) throw err;
      }
    }
    await this.updateNode(nodeId, (n) => {
      const before = Node.encode(n).finish();
      if (n.state !== NodeState.NODE_STATE_READY) n.stateChangedAt = { unixMs: nowMs };
      n.state = NodeState.NODE_STATE_READY;
      n.statusMessage = '';
      if (req.hostname !== '') n.hostname = req.hostname;
      if (req.addresses.length > 0) n.addresses = req.addresses;
      if (req.resources !== undefined) n.resources = req.resources;
      return !Buffer.from(before).equals(Buffer.from(Node.encode(n).finish()));
    });
  }

  /** Read-modify-write of one node, retried when another writer got there first. */
  private async updateNode(nodeId: string, change: (n: Node) => boolean): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const stored = this.opts.store.get('node', nodeId);
      if (stored === undefined) return;
      const n = structuredClone(stored);
      if (!change(n)) return;
      try {
        await this.opts.proposer.propose(
          new TransactionBuilder(this.clock.nowMs()).update('node', n).build(),
        );
        return;
      } catch (err) {
        if (!(err instanceof MeshError && err.code === 'VERSION_CONFLICT') || attempt >= 4) throw err;
      }
    }
  }

  private openAssignments(call: grpc.ServerWritableStream<AssignmentsRequest, AssignmentsResponse>): void {
    const s = this.sessionOf(call);
    if (s instanceof Error) {
      failStream(call, s);
      return;
    }
    const { state, tasks } = this.computeFor(s.nodeId);
    const stream: AssignmentStream = { call, lastState: state, lastTasks: tasks, pending: 0 };
    s.assignments.add(stream);
    const forget = () => s.assignments.delete(stream);
    call.on('cancelled', forget);
    call.on('close', forget);
    this.send(s, stream, {
      kind: AssignmentsKind.ASSIGNMENTS_KIND_COMPLETE,
      fromVersion: 0,
      toVersion: state.version,
      upsertTasks: tasks,
      removeTasks: [],
      desiredState: state,
      desiredStateDelta: undefined,
    });
  }

  private computeFor(nodeId: string): { state: DesiredState; tasks: Task[] } {
    const store = this.opts.store;
    const allTasks = store.list('task');
    const view = clusterViewOf({
      nodes: store.list('node'),
      services: store.list('service'),
      tasks: allTasks,
      networks: store.list('network'),
      cluster: store.list('cluster')[0],
    });
    return { state: desiredStateForNode(view, nodeId, store.index), tasks: tasksForNode(allTasks, nodeId) };
  }

  /** Store changes arrive per commit; bursts (a 500-task create) become one increment per session. */
  private scheduleAssignments(): void {
    if (this.cancelCoalesce !== undefined || !this.running) return;
    this.cancelCoalesce = this.clock.setTimer(this.opts.assignmentsCoalesceMs ?? 20, () => {
      this.cancelCoalesce = undefined;
      this.sendIncrements();
    });
  }

  private sendIncrements(): void {
    this.sendManagerChanges();
    for (const s of this.sessions.values()) {
      if (s.assignments.size === 0) continue;
      const { state, tasks } = this.computeFor(s.nodeId);
      for (const stream of s.assignments) {
        const delta = diffDesiredState(stream.lastState, state);
        const taskDiff = diffTaskLists(stream.lastTasks, tasks);
        if (isEmptyDelta(delta) && taskDiff.upsert.length + taskDiff.remove.length === 0) continue;
        const fromVersion = stream.lastState.version;
        stream.lastState = state;
        stream.lastTasks = tasks;
        this.send(s, stream, {
          kind: AssignmentsKind.ASSIGNMENTS_KIND_INCREMENTAL,
          fromVersion,
          toVersion: state.version,
          upsertTasks: taskDiff.upsert,
          removeTasks: taskDiff.remove,
          desiredState: undefined,
          desiredStateDelta: delta,
        });
      }
    }
  }

  /** The Session stream carries later changes of the manager list (promotions, demotions). */
  private sendManagerChanges(): void {
    const managers = this.opts.managers?.() ?? [];
    const key = JSON.stringify(managers);
    if (key === this.lastManagersKey) return;
    this.lastManagersKey = key;
    for (const s of this.sessions.values())
      if (!s.call.writableEnded)
        s.call.write({ sessionId: s.id, nodeId: s.nodeId, managers, heartbeatPeriodMs: 0 });
  }

  private send(s: SessionState, stream: AssignmentStream, msg: AssignmentsResponse): void {
    const max = this.opts.maxPendingAssignments ?? 64;
    if (stream.pending >= max) {
      // A node that cannot keep up would make us buffer without bound; it
      // reconnects and gets a COMPLETE set, which costs one message.
      s.assignments.delete(stream);
      failStream(
        stream.call,
        serviceError(
          grpc.status.RESOURCE_EXHAUSTED,
          `assignments stream fell ${max} messages behind; reconnect`,
        ),
      );
      return;
    }
    stream.pending++;
    stream.call.write(msg, () => {
      stream.pending--;
    });
  }

  private async updateTaskStatus(
    call: grpc.ServerUnaryCall<UpdateTaskStatusRequest, UpdateTaskStatusResponse>,
  ): Promise<UpdateTaskStatusResponse> {
    const s = this.sessionOf(call);
    if (s instanceof Error) throw s;
    try {
      validateStatusRequest(call.request);
    } catch (err) {
      throw serviceError(grpc.status.INVALID_ARGUMENT, `UpdateTaskStatus: ${errorMessage(err)}`);
    }
    const accepted: TaskStatusUpdate[] = [];
    for (const u of call.request.updates) {
      const d = decideStatusUpdate(this.opts.store.get('task', u.taskId), s.nodeId, u.status);
      if (d.apply) accepted.push(u);
      else if (d.reason !== 'no change')
        this.log.debug({ nodeId: s.nodeId, taskId: u.taskId, reason: d.reason }, 'status update ignored');
    }
    if (accepted.length > 0) await this.batcher.add(s.nodeId, accepted);
    return {};
  }
}

function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** grpc-js ends a server stream with this status once queued messages are sent (destroy() would drop it). */
function failStream(call: grpc.ServerWritableStream<unknown, unknown>, err: grpc.ServiceError): void {
  if (!call.writableEnded) call.emit('error', err);
}

/** Trailing metadata key on UNAVAILABLE: the leader's dispatcher address, when this manager knows it. */
export const LEADER_METADATA_KEY = 'meshd-leader';

function toServiceError(err: unknown): grpc.ServiceError {
  if (err instanceof Error && 'code' in err && typeof (err as { code: unknown }).code === 'number')
    return err as grpc.ServiceError;
  const code =
    err instanceof MeshError && err.code === 'NOT_LEADER' ? grpc.status.UNAVAILABLE : grpc.status.INTERNAL;
  return serviceError(code, errorMessage(err));
}
