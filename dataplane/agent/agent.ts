import { randomInt } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import type {
  AssignmentsResponse,
  SessionRequest,
  TaskStatusUpdate,
} from '../../src/api/gen/meshd/v1/dispatcher.js';
import { type Task, TaskState, type TaskStatus } from '../../src/api/gen/meshd/v1/objects.js';
import { type Clock, systemClock } from '../../src/common/clock.js';
import { errorMessage } from '../../src/common/errors.js';
import { type Logger, subsystemLogger } from '../../src/common/logger.js';
import type { Rng } from '../../src/common/rng.js';
import type { CgroupV2 } from '../executor/cgroup.js';
import { runProbe } from '../executor/probes.js';
import { TaskProcess } from '../executor/task-process.js';
import { DEFAULT_MAX_LOG_BYTES, DEFAULT_STOP_GRACE_PERIOD_MS, type TaskEvent } from '../executor/types.js';
import { sandboxNetnsName } from '../overlay/names.js';
import { DataplaneApply } from './apply.js';
import { type Assignments, applyAssignments } from './assignments.js';
import { LogPublisher } from './log-publisher.js';
import {
  isDrained,
  type LocalPhase,
  planTaskActions,
  readinessPorts,
  runSpecFor,
  statusForEvent,
} from './plan.js';
import { AgentSession } from './session.js';

/**
 * What a target says while its apply runs: the sandboxes of these tasks (or
 * of every task of the state) are as this target needs them for the task to
 * start. Tasks start on that, not on the end of the whole apply.
 */
export interface ApplyProgress {
  ready(taskIds: readonly string[] | 'all'): void;
}

/** Anything that programs a node from its DesiredState: the Reconciler, EmbeddedDns. */
export interface DataplaneTarget {
  name: string;
  /**
   * Programs `state`. A target that calls `progress.ready('all')` lets the
   * next target begin, and the tasks start, before its own apply ends; one
   * that never calls it gates both until it ends (successfully or not).
   */
  apply(state: DesiredState, progress: ApplyProgress): Promise<unknown>;
  /** For diagnostics: what the target holds now (the reconciler's desired vs programmed views). */
  view?(): Promise<unknown>;
}

export interface AgentOptions {
  managers: readonly string[];
  credentials: () => grpc.ChannelCredentials;
  describe: () => SessionRequest;
  /**
   * Applied in order on every assignments change (sandboxes first); a task
   * starts once each target is done with its sandbox (see ApplyProgress).
   */
  dataplane: readonly DataplaneTarget[];
  /** Namespace prefix of this host (tasks run in `sandboxNetnsName(prefix, id)`); null runs them in the host's. */
  hostPrefix: string | null;
  logDir: string;
  maxLogBytes?: number;
  stopGracePeriodMs?: number;
  /** Bound on waiting for the task to leave load balancing before SIGTERM. */
  drainTimeoutMs?: number;
  /** After it left load balancing, time for other nodes to apply that and for open requests to finish. */
  drainSettleMs?: number;
  /** How long the rest of an apply (the LB) runs alone once the sandboxes exist (see DataplaneApply). */
  dataplaneHeadStartMs?: number;
  /** Bound on waiting for a new task's service ports to accept connections before it is RUNNING anyway. */
  readinessTimeoutMs?: number;
  cgroup?: CgroupV2 | undefined;
  clock?: Clock;
  rng?: Rng;
  logger?: Logger;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

interface LocalTask {
  proc: TaskProcess;
  phase: LocalPhase;
  hasHealthCheck: boolean;
  /** Ports that must accept connections before RUNNING (tasks in a sandbox without a health check). */
  readinessPorts: number[];
  stopByManager: boolean;
}

const MAX_STATUS_BATCH = 200;
const READINESS_POLL_MS = 100;
const READINESS_PROBE_TIMEOUT_MS = 1000;

const cryptoRng: Rng = {
  next: () => randomInt(0, 2 ** 32) / 2 ** 32,
  int: (bound) => randomInt(0, bound),
  intBetween: (min, max) => randomInt(min, max + 1),
  fork: () => cryptoRng,
};

/**
 * The node's side of the dispatcher: keeps a session to a manager, turns
 * assignments into data-plane applies and task processes, and reports task
 * status. Status reports are kept (latest per task) until a manager has
 * committed them, so a failover loses none.
 */
export class Agent {
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly session: AgentSession;
  private readonly logs: LogPublisher;
  private readonly local = new Map<string, LocalTask>();
  private readonly pendingStatus = new Map<string, TaskStatusUpdate>();
  private assignments: Assignments | undefined;
  private applied: DesiredState | undefined;
  private appliedWaiters: (() => void)[] = [];
  private cancelFlush: (() => void) | undefined;
  private flushing = false;
  private readonly stopping = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(private readonly opts: AgentOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? subsystemLogger('agent');
    this.logs = new LogPublisher({
      logDir: opts.logDir,
      credentials: opts.credentials,
      clock: this.clock,
      log: this.log,
    });
    this.session = new AgentSession({
      managers: opts.managers,
      credentials: opts.credentials,
      describe: opts.describe,
      clock: this.clock,
      rng: opts.rng ?? cryptoRng,
      log: this.log,
      onAssignments: (msg) => this.onAssignments(msg),
      onConnected: ({ manager, nodeId, sessionId }) => {
        this.log.info({ manager, nodeId }, 'dispatcher session open');
        // Log subscriptions come from where the session is: the broker runs beside the dispatcher.
        this.logs.connect(manager, sessionId);
        this.scheduleFlush(0);
      },
      onDisconnected: () => this.logs.disconnect(),
      ...(opts.reconnectMinMs === undefined ? {} : { reconnectMinMs: opts.reconnectMinMs }),
      ...(opts.reconnectMaxMs === undefined ? {} : { reconnectMaxMs: opts.reconnectMaxMs }),
    });
  }

  start(): void {
    this.stopped = false;
    this.session.start();
  }

  /** Ends the session; with `stopTasks` also stops every task (SIGTERM, grace, SIGKILL; no drain). */
  async stop(options: { stopTasks?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.cancelFlush?.();
    await this.session.stop();
    this.logs.disconnect();
    if (options.stopTasks === true)
      await Promise.all([...this.local.values()].map((t) => t.proc.stop().catch(() => undefined)));
    await Promise.all([...this.stopping]);
  }

  status(): {
    connected: { manager: string; sessionId: string } | undefined;
    version: number | undefined;
    tasks: { taskId: string; phase: LocalPhase; pid: number | undefined }[];
    pendingReports: number;
    knownManagers: readonly string[];
  } {
    return {
      connected: this.session.connected,
      version: this.assignments?.version,
      tasks: [...this.local].map(([taskId, t]) => ({ taskId, phase: t.phase, pid: t.proc.pid })),
      pendingReports: this.pendingStatus.size,
      knownManagers: [...this.session.knownManagers],
    };
  }

  /** The data-plane state last applied (what the dispatcher sent), undefined before the first assignments. */
  appliedState(): DesiredState | undefined {
    return this.applied;
  }

  /** Each data-plane target's own view (targets without one are left out); a failing read is reported as such. */
  async dataplaneViews(): Promise<{ name: string; view: unknown; error: string | undefined }[]> {
    const views: { name: string; view: unknown; error: string | undefined }[] = [];
    for (const target of this.opts.dataplane) {
      if (target.view === undefined) continue;
      try {
        views.push({ name: target.name, view: await target.view(), error: undefined });
      } catch (err) {
        views.push({ name: target.name, view: undefined, error: errorMessage(err) });
      }
    }
    return views;
  }

  private async onAssignments(msg: AssignmentsResponse): Promise<void> {
    this.assignments = applyAssignments(this.assignments, msg);
    const { tasks, desired } = this.assignments;
    const plan = planTaskActions(tasks, this.phases());
    for (const t of plan.start) this.report(t.meta?.id ?? '', TaskState.TASK_STATE_ACCEPTED, 'accepted');
    const apply = new DataplaneApply(this.opts.dataplane, desired, {
      log: this.log,
      clock: this.clock,
      ...(this.opts.dataplaneHeadStartMs === undefined
        ? {}
        : { headStartMs: this.opts.dataplaneHeadStartMs }),
    });
    for (const r of plan.report) this.report(r.taskId, r.status.state, r.status.message, r.status.err);
    // A task needs its own sandbox, not every other service's LB entries or DNS
    // sockets: each starts as soon as every target is done with its sandbox.
    await Promise.all(
      plan.start.map(async (t) => {
        await apply.readyFor(t.meta?.id ?? '');
        await this.startTask(t, desired);
      }),
    );
    await apply.done;
    this.applied = desired;
    for (const w of this.appliedWaiters.splice(0)) w();
    for (const id of plan.stop) this.stopTask(id, true);
    // Exited tasks the managers no longer list are forgotten.
    for (const [id, t] of this.local) if (t.phase === 'exited' && !tasks.has(id)) this.local.delete(id);
  }

  private phases(): Map<string, LocalPhase> {
    return new Map([...this.local].map(([id, t]) => [id, t.phase]));
  }

  /** `desired`: the state that assigned it (the one being applied: its service's ports). */
  private async startTask(task: Task, desired: DesiredState): Promise<void> {
    // An assignments message handled while the agent stops (its data-plane
    // apply still running) would start a task nobody stops: meshd then
    // never exited (seen in the service-logs lab right after a node died).
    if (this.stopped) return;
    const id = task.meta?.id ?? '';
    const spec = runSpecFor(task, {
      logDir: this.opts.logDir,
      maxLogBytes: this.opts.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES,
      stopGracePeriodMs: this.opts.stopGracePeriodMs ?? DEFAULT_STOP_GRACE_PERIOD_MS,
      netnsName: this.opts.hostPrefix === null ? undefined : sandboxNetnsName(this.opts.hostPrefix, id),
    });
    let proc: TaskProcess;
    try {
      proc = new TaskProcess(spec, {
        clock: this.clock,
        log: this.log,
        cgroup: this.opts.cgroup,
        onEvent: (e) => this.onTaskEvent(e),
      });
    } catch (err) {
      this.report(id, TaskState.TASK_STATE_REJECTED, 'cannot run', errorMessage(err));
      return;
    }
    const entry: LocalTask = {
      proc,
      phase: 'starting',
      hasHealthCheck: spec.healthCheck !== undefined,
      readinessPorts:
        spec.healthCheck === undefined && spec.netnsName !== undefined ? readinessPorts(desired, id) : [],
      stopByManager: false,
    };
    this.local.set(id, entry);
    this.report(id, TaskState.TASK_STATE_PREPARING, 'preparing');
    try {
      await proc.start();
    } catch (err) {
      entry.phase = 'exited';
      this.report(id, TaskState.TASK_STATE_FAILED, 'start failed', errorMessage(err));
    }
  }

  private onTaskEvent(e: TaskEvent): void {
    const entry = this.local.get(e.taskId);
    if (entry === undefined) return;
    if (e.type === 'exited') entry.phase = 'exited';
    else if (e.type === 'started' && entry.readinessPorts.length > 0) {
      const ports = entry.readinessPorts.join(', ');
      this.report(
        e.taskId,
        TaskState.TASK_STATE_STARTING,
        `started; waiting for port ${ports} to accept connections`,
      );
      void this.awaitReadiness(e.taskId, entry);
      return;
    } else if (e.type === 'started' && !entry.hasHealthCheck) entry.phase = 'running';
    else if (e.type === 'health' && e.status === 'healthy' && entry.phase === 'starting')
      entry.phase = 'running';
    const s = statusForEvent(e, entry.hasHealthCheck, entry.stopByManager);
    if (s !== undefined) this.report(e.taskId, s.state, s.message, s.err);
    // Swarm's rule: an unhealthy task is stopped (and replaced by the orchestrator).
    if (e.type === 'health' && e.status === 'unhealthy') this.stopTask(e.taskId, false);
  }

  /**
   * RUNNING (an active endpoint everywhere) only once the task's service
   * ports accept connections inside its sandbox; after `readinessTimeoutMs`
   * it is RUNNING anyway (a task listening elsewhere than 127.0.0.1 or
   * 0.0.0.0 is not held back forever), with a message that says so.
   */
  private async awaitReadiness(taskId: string, entry: LocalTask): Promise<void> {
    const netns = entry.proc.spec.netnsName;
    const deadline = this.clock.nowMs() + (this.opts.readinessTimeoutMs ?? 10_000);
    let waiting = [...entry.readinessPorts];
    while (waiting.length > 0 && this.clock.nowMs() < deadline) {
      const results = await Promise.all(
        waiting.map((port) => runProbe({ kind: 'tcp', port }, netns, READINESS_PROBE_TIMEOUT_MS)),
      );
      if (entry.phase !== 'starting') return;
      waiting = waiting.filter((_, i) => !results[i]?.passed);
      if (waiting.length > 0) await new Promise<void>((r) => this.clock.setTimer(READINESS_POLL_MS, r));
    }
    if (entry.phase !== 'starting') return;
    entry.phase = 'running';
    const message =
      waiting.length === 0
        ? 'started; accepting connections'
        : `started; port ${waiting.join(', ')} not accepting connections after ${this.opts.readinessTimeoutMs ?? 10_000} ms`;
    this.report(taskId, TaskState.TASK_STATE_RUNNING, message);
  }

  private stopTask(taskId: string, byManager: boolean): void {
    const entry = this.local.get(taskId);
    if (entry === undefined || entry.phase === 'stopping' || entry.phase === 'exited') return;
    entry.phase = 'stopping';
    entry.stopByManager = byManager;
    const done = entry.proc
      .stop({ drain: () => this.drain(taskId), drainTimeoutMs: this.opts.drainTimeoutMs ?? 30_000 })
      .catch((err: unknown) => this.log.warn({ taskId, err: errorMessage(err) }, 'stop failed'))
      .finally(() => this.stopping.delete(done));
    this.stopping.add(done);
  }

  /**
   * Stop order from DESIGN.md: no new connections first. The managers mark a
   * stopping task's endpoint draining (weight 0) in the same assignments that
   * ask to stop it; wait until this node applied a state without it as an
   * active endpoint, then let other nodes catch up and open requests finish.
   */
  private async drain(taskId: string): Promise<void> {
    while (!isDrained(this.applied, taskId)) await new Promise<void>((r) => this.appliedWaiters.push(r));
    const settleMs = this.opts.drainSettleMs ?? 1000;
    if (settleMs > 0) await new Promise<void>((r) => this.clock.setTimer(settleMs, r));
  }

  private report(taskId: string, state: TaskState, message: string, err = ''): void {
    const status: TaskStatus = { state, message, err, timestamp: { unixMs: this.clock.nowMs() } };
    const prev = this.pendingStatus.get(taskId)?.status?.state;
    // Observed states only move forward; an older pending report is replaced.
    if (prev !== undefined && prev > state) return;
    this.pendingStatus.set(taskId, { taskId, status });
    this.scheduleFlush(10);
  }

  private scheduleFlush(delayMs: number): void {
    if (this.cancelFlush !== undefined || this.pendingStatus.size === 0) return;
    this.cancelFlush = this.clock.setTimer(delayMs, () => {
      this.cancelFlush = undefined;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.session.connected === undefined) return;
    this.flushing = true;
    const batch = [...this.pendingStatus.values()].slice(0, MAX_STATUS_BATCH);
    try {
      await this.session.reportStatus(batch);
      // Drop what was sent unless a newer report replaced it meanwhile.
      for (const u of batch) if (this.pendingStatus.get(u.taskId) === u) this.pendingStatus.delete(u.taskId);
    } catch (err) {
      this.log.info({ err: errorMessage(err), reports: batch.length }, 'status report failed; will retry');
      this.flushing = false;
      this.scheduleFlush(500);
      return;
    }
    this.flushing = false;
    this.scheduleFlush(0);
  }
}
