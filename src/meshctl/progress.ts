import { ServiceMode, type ServiceObject, type Task, TaskState } from '../api/gen/meshd/v1/objects.js';
import { MeshError } from '../common/errors.js';
import type { ControlCalls } from './client.js';

/** Running versus wanted tasks of one service, as `3/5 tasks running` shows them. */
export interface Convergence {
  running: number;
  wanted: number;
  /** Old tasks still desired running (an update in flight). */
  extra: number;
  lastError: string;
}

/** Pure: how far a service is from its spec, from its current tasks. */
export function convergence(service: ServiceObject, tasks: Task[]): Convergence {
  const live = tasks.filter(
    (t) => t.serviceId === service.meta?.id && t.desiredState === TaskState.TASK_STATE_RUNNING,
  );
  const current = live.filter((t) => t.specVersion === service.specVersion);
  const wanted =
    service.spec?.mode === ServiceMode.SERVICE_MODE_GLOBAL
      ? Math.max(live.length, 1)
      : Number(service.spec?.replicas ?? 0);
  const running = current.filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING).length;
  const failed = tasks
    .filter((t) => t.specVersion === service.specVersion)
    .filter(
      (t) =>
        t.status?.state === TaskState.TASK_STATE_FAILED || t.status?.state === TaskState.TASK_STATE_REJECTED,
    )
    .sort((a, b) => Number(b.status?.timestamp?.unixMs ?? 0) - Number(a.status?.timestamp?.unixMs ?? 0));
  const f = failed[0]?.status;
  return {
    running,
    wanted,
    extra: live.length - current.length,
    lastError: f === undefined ? '' : f.err || f.message,
  };
}

export function progressLine(name: string, c: Convergence): string {
  const base = `${name}: ${c.running}/${c.wanted} tasks running`;
  const old = c.extra > 0 ? `, ${c.extra} old still running` : '';
  const err = c.lastError !== '' ? ` (last failure: ${c.lastError})` : '';
  return base + old + err;
}

/**
 * Polls until the service runs exactly its wanted tasks, printing a line each
 * time the count changes; gives up after `timeoutMs` with what to look at.
 */
export async function waitForService(opts: {
  control: ControlCalls;
  serviceId: string;
  out: (line: string) => void;
  sleep: (ms: number) => Promise<void>;
  nowMs: () => number;
  pollMs: number;
  timeoutMs: number;
}): Promise<void> {
  const start = opts.nowMs();
  let last = '';
  for (;;) {
    const { service } = await opts.control.getService({ service: opts.serviceId, read: undefined });
    if (service === undefined)
      throw new MeshError('NOT_FOUND', `service ${opts.serviceId} was removed while waiting`);
    const { tasks } = await opts.control.listTasks({
      service: service.meta?.id ?? '',
      node: '',
      all: true,
      read: undefined,
    });
    const c = convergence(service, tasks);
    const name = service.spec?.name ?? opts.serviceId;
    const line = progressLine(name, c);
    if (line !== last) opts.out(line);
    last = line;
    if (c.running === c.wanted && c.extra === 0) {
      opts.out(`${name}: converged`);
      return;
    }
    if (opts.nowMs() - start >= opts.timeoutMs)
      throw new MeshError(
        'NOT_CONVERGED',
        `${name} not converged after ${Math.round(opts.timeoutMs / 1000)} s (${c.running}/${c.wanted} running): see "meshctl service ps ${name}"`,
      );
    await opts.sleep(opts.pollMs);
  }
}
