/**
 * What the executor needs to run one task, and what it reports back. The agent
 * builds a TaskRunSpec from the task's spec and its sandbox; the executor knows
 * nothing about the control plane.
 */
export interface TaskRunSpec {
  taskId: string;
  /** argv: the program, then its arguments. */
  command: string[];
  /** The task's whole environment (the daemon's own is not inherited). */
  env: Record<string, string>;
  workingDir?: string;
  user?: { uid: number; gid: number };
  /** Network namespace (by name) the task runs in: its sandbox. Undefined = the host's. */
  netnsName?: string;
  /** Directory for `<taskId>.stdout.log` / `.stderr.log`. */
  logDir: string;
  /** Per stream; past it the file rotates once to `.1` (so at most 2× on disk). */
  maxLogBytes: number;
  limits?: ResourceLimits;
  healthCheck?: HealthCheckSpec;
  /** SIGTERM → SIGKILL delay on stop. */
  stopGracePeriodMs: number;
}

export interface ResourceLimits {
  memoryBytes?: number;
  /** 1000 = one CPU. */
  cpuMillicores?: number;
  pids?: number;
}

export type HealthProbe =
  | { kind: 'command'; command: string[] }
  | { kind: 'http'; port: number; path: string }
  | { kind: 'tcp'; port: number };

export interface HealthCheckSpec {
  probe: HealthProbe;
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive failures (after the start period) that make the task unhealthy. */
  retries: number;
  /** Failures during this time after start do not count; a success ends it early. */
  startPeriodMs: number;
}

export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';

export type ExitOutcome = 'complete' | 'failed';

export type TaskEvent =
  | { type: 'started'; taskId: string; pid: number; atMs: number }
  | { type: 'health'; taskId: string; status: HealthStatus; output: string; atMs: number }
  | {
      type: 'exited';
      taskId: string;
      exitCode: number | null;
      signal: string | null;
      /** Exit code 0 is complete; anything else, or death by a signal, failed. */
      outcome: ExitOutcome;
      /** True when the exit followed a stop() request. */
      stopRequested: boolean;
      atMs: number;
    }
  | { type: 'error'; taskId: string; message: string; atMs: number };

export const DEFAULT_MAX_LOG_BYTES = 10 * 1024 * 1024;
export const DEFAULT_STOP_GRACE_PERIOD_MS = 10_000;
