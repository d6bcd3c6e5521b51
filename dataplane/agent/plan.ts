import { type DesiredState, EndpointState, Protocol } from '../../src/api/gen/meshd/v1/dataplane.js';
import { type Task, TaskState, type TaskStatus } from '../../src/api/gen/meshd/v1/objects.js';
import type { HealthCheckSpec, TaskEvent, TaskRunSpec } from '../executor/types.js';

/** What this agent knows about a task it runs. */
export type LocalPhase = 'starting' | 'running' | 'stopping' | 'exited';

export interface TaskActions {
  /** Tasks to start (their sandbox is in the data-plane state already applied). */
  start: Task[];
  /** Local tasks to drain and stop. */
  stop: string[];
  /** Assigned tasks this agent cannot run, with the status to report. */
  report: { taskId: string; status: Omit<TaskStatus, 'timestamp'> }[];
}

const status = (state: TaskState, message: string, err = '') => ({ state, message, err });

/**
 * Which tasks to start and stop, from what the managers assigned and what
 * runs here. Pure: the agent calls it after every assignments change.
 *
 * - desired RUNNING, not running here, observed before STARTING → start;
 * - desired RUNNING, observed STARTING or later, but no process here: this
 *   agent restarted and lost it → report FAILED, the orchestrator replaces it
 *   (restarting in place would hide the crash from the restart policy);
 * - running here and no longer assigned, or desired past RUNNING → stop.
 */
export function planTaskActions(
  assigned: ReadonlyMap<string, Task>,
  local: ReadonlyMap<string, LocalPhase>,
): TaskActions {
  const actions: TaskActions = { start: [], stop: [], report: [] };
  for (const [id, t] of assigned) {
    const observed = t.status?.state ?? TaskState.TASK_STATE_UNSPECIFIED;
    const wanted = t.desiredState <= TaskState.TASK_STATE_RUNNING;
    const here = local.get(id);
    if (!wanted) {
      if (here === 'starting' || here === 'running') actions.stop.push(id);
      else if (here === undefined && observed < TaskState.TASK_STATE_COMPLETE)
        actions.report.push({
          taskId: id,
          status: status(TaskState.TASK_STATE_SHUTDOWN, 'stopped before it ran'),
        });
      continue;
    }
    if (here !== undefined) continue;
    if (observed >= TaskState.TASK_STATE_STARTING)
      actions.report.push({
        taskId: id,
        status: status(
          TaskState.TASK_STATE_FAILED,
          'task process lost',
          'the agent restarted while the task ran',
        ),
      });
    else if (t.spec === undefined || t.spec.command.length === 0)
      actions.report.push({
        taskId: id,
        status: status(TaskState.TASK_STATE_REJECTED, 'cannot run', 'task spec has no command'),
      });
    else actions.start.push(t);
  }
  for (const [id, phase] of local)
    if (!assigned.has(id) && (phase === 'starting' || phase === 'running')) actions.stop.push(id);
  actions.stop.sort();
  return actions;
}

/**
 * The status to report for an executor event. With a health check a task is
 * RUNNING (and so an active endpoint) only once healthy: starting tasks get no
 * traffic. Returns undefined when the event changes nothing the managers see.
 */
export function statusForEvent(
  event: TaskEvent,
  hasHealthCheck: boolean,
  stopRequestedByManager: boolean,
): Omit<TaskStatus, 'timestamp'> | undefined {
  switch (event.type) {
    case 'started':
      return hasHealthCheck
        ? status(TaskState.TASK_STATE_STARTING, 'started; waiting for the health check')
        : status(TaskState.TASK_STATE_RUNNING, 'started');
    case 'health':
      if (event.status === 'healthy') return status(TaskState.TASK_STATE_RUNNING, 'healthy');
      if (event.status === 'unhealthy')
        return status(
          TaskState.TASK_STATE_FAILED,
          'unhealthy',
          `health check failed: ${event.output.slice(0, 200)}`,
        );
      return undefined;
    case 'exited': {
      if (event.stopRequested && stopRequestedByManager)
        return status(TaskState.TASK_STATE_SHUTDOWN, 'stopped');
      const how = event.signal !== null ? `killed by ${event.signal}` : `exit code ${event.exitCode}`;
      return event.outcome === 'complete'
        ? status(TaskState.TASK_STATE_COMPLETE, 'finished')
        : status(TaskState.TASK_STATE_FAILED, 'failed', how);
    }
    case 'error':
      return status(TaskState.TASK_STATE_FAILED, 'executor error', event.message.slice(0, 200));
    default: {
      const never: never = event;
      return never;
    }
  }
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface RunSpecOptions {
  logDir: string;
  maxLogBytes: number;
  stopGracePeriodMs: number;
  /** The task's sandbox namespace, or undefined to run in the host's (tests without root). */
  netnsName: string | undefined;
}

/** The executor's spec from the task's template: env `K=V` entries, PATH defaulted. */
export function runSpecFor(task: Task, opts: RunSpecOptions): TaskRunSpec {
  const env: Record<string, string> = { PATH: DEFAULT_PATH };
  for (const kv of task.spec?.env ?? []) {
    const eq = kv.indexOf('=');
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  env['MESHD_TASK_ID'] = task.meta?.id ?? '';
  env['MESHD_SERVICE_ID'] = task.serviceId;
  env['MESHD_TASK_SLOT'] = String(task.slot);
  const h = task.spec?.health;
  const healthCheck: HealthCheckSpec | undefined =
    h !== undefined && h.test.length > 0
      ? {
          probe: { kind: 'command', command: h.test },
          intervalMs: Math.max(100, h.intervalMs || 30_000),
          timeoutMs: Math.max(1, h.timeoutMs || 30_000),
          retries: Math.max(1, h.retries || 3),
          startPeriodMs: h.startPeriodMs,
        }
      : undefined;
  const cpu = task.spec?.reservations?.nanoCpus ?? 0;
  const mem = task.spec?.reservations?.memoryBytes ?? 0;
  return {
    taskId: task.meta?.id ?? '',
    command: [...(task.spec?.command ?? [])],
    env,
    logDir: opts.logDir,
    maxLogBytes: opts.maxLogBytes,
    stopGracePeriodMs: opts.stopGracePeriodMs,
    ...(opts.netnsName === undefined ? {} : { netnsName: opts.netnsName }),
    ...(healthCheck === undefined ? {} : { healthCheck }),
    ...(cpu > 0 || mem > 0
      ? {
          limits: {
            ...(mem > 0 ? { memoryBytes: mem } : {}),
            ...(cpu > 0 ? { cpuMillicores: Math.ceil(cpu / 1_000_000) } : {}),
          },
        }
      : {}),
  };
}

/** True once no service in the applied state sends new connections to the task. */
export function isDrained(state: DesiredState | undefined, taskId: string): boolean {
  if (state === undefined) return true;
  return !state.services.some((s) =>
    s.endpoints.some((e) => e.taskId === taskId && e.state === EndpointState.ENDPOINT_STATE_ACTIVE),
  );
}

/**
 * TCP ports a new task must accept connections on before it is reported
 * RUNNING (and so becomes an active endpoint): the target ports of the
 * service its sandbox belongs to. Without this gate a task without a health
 * check took traffic between its process start and its listen(), and those
 * connections were refused.
 */
export function readinessPorts(state: DesiredState | undefined, taskId: string): number[] {
  const serviceId = state?.sandboxes.find((s) => s.taskId === taskId)?.serviceId;
  if (serviceId === undefined || serviceId === '') return [];
  const service = state?.services.find((s) => s.id === serviceId);
  const ports = (service?.ports ?? [])
    .filter((p) => p.protocol !== Protocol.PROTOCOL_UDP && p.targetPort > 0)
    .map((p) => p.targetPort);
  return [...new Set(ports)].sort((a, b) => a - b);
}
