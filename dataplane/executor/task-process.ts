import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import type { Clock } from '../../src/common/clock.js';
import { MeshError, ValidationError } from '../../src/common/errors.js';
import type { Logger } from '../../src/common/logger.js';
import { BoundedLogFile } from './bounded-log.js';
import { type CgroupV2, createTaskCgroup, removeTaskCgroup } from './cgroup.js';
import { applyProbeResult, type HealthState, initialHealth } from './health.js';
import { runProbe } from './probes.js';
import type { TaskEvent, TaskRunSpec } from './types.js';

export interface TaskProcessDeps {
  clock: Clock;
  log: Logger;
  cgroup: CgroupV2 | undefined;
  onEvent(event: TaskEvent): void;
}

export interface StopOptions {
  /** Called first: take the task out of load balancing and let connections drain. */
  drain?: () => Promise<void>;
  /** Upper bound on `drain`; the stop goes on when it passes. */
  drainTimeoutMs?: number;
}

type ExitEvent = Extract<TaskEvent, { type: 'exited' }>;

/**
 * One task's process: started inside its sandbox, its output kept in bounded
 * log files, its health probed, its exit reported the moment it happens, and
 * stopped by drain → SIGTERM → grace period → SIGKILL.
 */
export class TaskProcess {
  private child: ResultPromise | undefined;
  private exited: Promise<ExitEvent> | undefined;
  private stopRequested = false;
  private health: HealthState | undefined;
  private cancelHealthTimer: (() => void) | undefined;
  private cgroupPath: string | undefined;

  constructor(
    readonly spec: TaskRunSpec,
    private readonly deps: TaskProcessDeps,
  ) {
    validateRunSpec(spec);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the process; resolves once it is spawned (or rejects with why it could not be). */
  async start(): Promise<number> {
    if (this.child !== undefined)
      throw new MeshError('TASK_ALREADY_STARTED', `task ${this.spec.taskId} already started`);
    const { spec, deps } = this;
    mkdirSync(spec.logDir, { recursive: true });
    const stdoutLog = new BoundedLogFile(join(spec.logDir, `${spec.taskId}.stdout.log`), spec.maxLogBytes);
    const stderrLog = new BoundedLogFile(join(spec.logDir, `${spec.taskId}.stderr.log`), spec.maxLogBytes);
    this.cgroupPath = spec.limits
      ? createTaskCgroup(deps.cgroup, spec.taskId, spec.limits, deps.log)
      : undefined;
    const [file, ...args] = launchArgv(spec, this.cgroupPath) as [string, ...string[]];
    const child = execa(file, args, {
      env: spec.env,
      extendEnv: false,
      cwd: spec.workingDir,
      stdin: 'ignore',
      buffer: false,
      reject: false,
      // Own process group, so a stop signal reaches the task's children too.
      detached: true,
      cleanup: true,
    });
    this.child = child;
    child.stdout?.on('data', (chunk: Buffer) => stdoutLog.write(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderrLog.write(chunk));
    this.exited = child.then((result) => {
      this.stopHealthChecks();
      stdoutLog.close();
      stderrLog.close();
      removeTaskCgroup(this.cgroupPath);
      const exitCode = result.exitCode ?? null;
      const signal = result.signal ?? null;
      const event: ExitEvent = {
        type: 'exited',
        taskId: spec.taskId,
        exitCode,
        signal,
        outcome: exitCode === 0 ? 'complete' : 'failed',
        stopRequested: this.stopRequested,
        atMs: deps.clock.nowMs(),
      };
      deps.onEvent(event);
      return event;
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid!));
      child.once('error', (err) =>
        reject(new MeshError('TASK_START_FAILED', `task ${spec.taskId}: ${err.message}`)),
      );
    });
    deps.onEvent({ type: 'started', taskId: spec.taskId, pid, atMs: deps.clock.nowMs() });
    if (spec.healthCheck !== undefined) {
      this.health = initialHealth(deps.clock.nowMs());
      this.scheduleHealthCheck();
    }
    return pid;
  }

  /** Resolves with the exit event, whenever the process ends. */
  wait(): Promise<ExitEvent> {
    if (this.exited === undefined)
      throw new MeshError('TASK_NOT_STARTED', `task ${this.spec.taskId} was never started`);
    return this.exited;
  }

  async stop(options: StopOptions = {}): Promise<ExitEvent> {
    const exited = this.wait();
    if (this.stopRequested) return exited;
    this.stopRequested = true;
    this.stopHealthChecks();
    if (options.drain !== undefined) await this.boundedDrain(options.drain, options.drainTimeoutMs ?? 30_000);
    this.signalGroup('SIGTERM');
    const cancelKill = this.deps.clock.setTimer(this.spec.stopGracePeriodMs, () =>
      this.signalGroup('SIGKILL'),
    );
    const event = await exited;
    cancelKill();
    return event;
  }

  private async boundedDrain(drain: () => Promise<void>, timeoutMs: number): Promise<void> {
    let cancel: (() => void) | undefined;
    const deadline = new Promise<void>((resolve) => {
      cancel = this.deps.clock.setTimer(timeoutMs, resolve);
    });
    try {
      await Promise.race([drain(), deadline]);
    } catch (err) {
      this.deps.log.warn({ taskId: this.spec.taskId, err }, 'drain failed; stopping anyway');
    } finally {
      cancel?.();
    }
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined || this.child?.exitCode !== null) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // Already gone: the exit handler reports it.
    }
  }

  private scheduleHealthCheck(): void {
    const check = this.spec.healthCheck;
    if (check === undefined || this.stopRequested) return;
    this.cancelHealthTimer = this.deps.clock.setTimer(check.intervalMs, () => {
      void this.probeOnce();
    });
  }

  private async probeOnce(): Promise<void> {
    const check = this.spec.healthCheck;
    if (check === undefined || this.health === undefined || this.stopRequested) return;
    const result = await runProbe(check.probe, this.spec.netnsName, check.timeoutMs);
    if (this.stopRequested || this.child?.exitCode !== null) return;
    const before = this.health.status;
    this.health = applyProbeResult(this.health, check, result.passed, this.deps.clock.nowMs());
    if (this.health.status !== before)
      this.deps.onEvent({
        type: 'health',
        taskId: this.spec.taskId,
        status: this.health.status,
        output: result.output,
        atMs: this.deps.clock.nowMs(),
      });
    this.scheduleHealthCheck();
  }

  private stopHealthChecks(): void {
    this.cancelHealthTimer?.();
    this.cancelHealthTimer = undefined;
  }
}

/**
 * The argv that starts a task: enter the sandbox's namespace, join the task's
 * cgroup (before exec, so nothing escapes), drop to the task's user, exec the
 * command. Each wrapper exec()s, so the PID we hold is the task's own.
 */
export function launchArgv(spec: TaskRunSpec, cgroupPath: string | undefined): string[] {
  let argv = [...spec.command];
  if (spec.user !== undefined)
    argv = [
      'setpriv',
      `--reuid=${spec.user.uid}`,
      `--regid=${spec.user.gid}`,
      '--clear-groups',
      '--',
      ...argv,
    ];
  if (cgroupPath !== undefined)
    argv = ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroupPath, ...argv];
  if (spec.netnsName !== undefined) argv = ['ip', 'netns', 'exec', spec.netnsName, ...argv];
  return argv;
}

export function validateRunSpec(spec: TaskRunSpec): void {
  const where = `task ${spec.taskId}`;
  if (spec.command.length === 0 || spec.command[0] === '')
    throw new ValidationError('command', `${where}: command must name a program, got an empty command`);
  if (!Number.isInteger(spec.stopGracePeriodMs) || spec.stopGracePeriodMs < 0)
    throw new ValidationError(
      'stopGracePeriodMs',
      `${where}: stop grace period must be an integer >= 0 ms, got ${spec.stopGracePeriodMs}`,
    );
  if (spec.netnsName !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(spec.netnsName))
    throw new ValidationError(
      'netnsName',
      `${where}: namespace name must be 1-64 of [A-Za-z0-9_.-], got ${JSON.stringify(spec.netnsName)}`,
    );
  const check = spec.healthCheck;
  if (check !== undefined) {
    for (const [field, value, min] of [
      ['healthCheck.intervalMs', check.intervalMs, 10],
      ['healthCheck.timeoutMs', check.timeoutMs, 1],
      ['healthCheck.retries', check.retries, 1],
      ['healthCheck.startPeriodMs', check.startPeriodMs, 0],
    ] as const) {
      if (!Number.isInteger(value) || value < min)
        throw new ValidationError(field, `${where}: ${field} must be an integer >= ${min}, got ${value}`);
    }
    if (
      (check.probe.kind === 'tcp' || check.probe.kind === 'http') &&
      !(check.probe.port >= 1 && check.probe.port <= 65535)
    )
      throw new ValidationError(
        'healthCheck.probe.port',
        `${where}: health check port must be 1..65535, got ${check.probe.port}`,
      );
  }
}
