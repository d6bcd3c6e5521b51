import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  isDrained,
  type LocalPhase,
  planTaskActions,
  readinessPorts,
  runSpecFor,
  statusForEvent,
} from '../../../dataplane/agent/plan.js';
import { DesiredState, EndpointState, Protocol } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { type Task, TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { task } from '../dispatcher/fixtures.js';

function withSpec(t: Task, command = ['sleep', '30']): Task {
  t.spec = {
    command,
    env: ['A=1', 'B=x=y'],
    reservations: undefined,
    restart: undefined,
    health: undefined,
    placement: undefined,
    forceUpdate: 0,
  };
  return t;
}

const assigned = (...tasks: Task[]) => new Map(tasks.map((t) => [t.meta?.id ?? '', t]));

test('an assigned task desired RUNNING that is not running here is started', () => {
  const t = withSpec(task('a', 's', 'n1', 1, TaskState.TASK_STATE_ASSIGNED, {}));
  const p = planTaskActions(assigned(t), new Map());
  assert.deepEqual(
    p.start.map((x) => x.meta?.id),
    ['a'],
  );
  assert.deepEqual(p.stop, []);
});

test('a task already running, stopping or exited here is not started again', () => {
  const t = withSpec(task('a', 's', 'n1', 1, TaskState.TASK_STATE_RUNNING, {}));
  for (const phase of ['starting', 'running', 'stopping', 'exited'] as LocalPhase[])
    assert.deepEqual(planTaskActions(assigned(t), new Map([['a', phase]])).start, [], phase);
});

test('a task desired past RUNNING, or no longer assigned, is stopped once', () => {
  const shut = withSpec(
    task('a', 's', 'n1', 1, TaskState.TASK_STATE_RUNNING, {}, TaskState.TASK_STATE_SHUTDOWN),
  );
  const local = new Map<string, LocalPhase>([
    ['a', 'running'],
    ['gone', 'starting'],
    ['old', 'exited'],
    ['busy', 'stopping'],
  ]);
  assert.deepEqual(planTaskActions(assigned(shut), local).stop, ['a', 'gone']);
});

test('a task observed STARTING or later with no process here is reported FAILED, not restarted in place', () => {
  const t = withSpec(task('a', 's', 'n1', 1, TaskState.TASK_STATE_RUNNING, {}));
  const p = planTaskActions(assigned(t), new Map());
  assert.deepEqual(p.start, []);
  assert.equal(p.report[0]?.status.state, TaskState.TASK_STATE_FAILED);
});

test('a task without a command is REJECTED; one stopped before it ran is SHUTDOWN', () => {
  const noSpec = task('a', 's', 'n1', 1, TaskState.TASK_STATE_ASSIGNED, {});
  const early = withSpec(
    task('b', 's', 'n1', 2, TaskState.TASK_STATE_ASSIGNED, {}, TaskState.TASK_STATE_SHUTDOWN),
  );
  const p = planTaskActions(assigned(noSpec, early), new Map());
  assert.deepEqual(
    p.report.map((r) => [r.taskId, r.status.state]),
    [
      ['a', TaskState.TASK_STATE_REJECTED],
      ['b', TaskState.TASK_STATE_SHUTDOWN],
    ],
  );
});

test('with a health check a task is RUNNING only once healthy; unhealthy is FAILED', () => {
  const started = { type: 'started', taskId: 'a', pid: 1, atMs: 0 } as const;
  assert.equal(statusForEvent(started, false, false)?.state, TaskState.TASK_STATE_RUNNING);
  assert.equal(statusForEvent(started, true, false)?.state, TaskState.TASK_STATE_STARTING);
  const health = (status: 'healthy' | 'unhealthy' | 'starting') =>
    statusForEvent({ type: 'health', taskId: 'a', status, output: 'boom', atMs: 0 }, true, false);
  assert.equal(health('healthy')?.state, TaskState.TASK_STATE_RUNNING);
  assert.equal(health('unhealthy')?.state, TaskState.TASK_STATE_FAILED);
  assert.equal(health('starting'), undefined);
});

test('exit code decides COMPLETE or FAILED; a stop the managers asked for is SHUTDOWN', () => {
  const exit = (exitCode: number | null, signal: string | null, stopRequested: boolean) => ({
    type: 'exited' as const,
    taskId: 'a',
    exitCode,
    signal,
    outcome: exitCode === 0 ? ('complete' as const) : ('failed' as const),
    stopRequested,
    atMs: 0,
  });
  assert.equal(statusForEvent(exit(0, null, false), false, false)?.state, TaskState.TASK_STATE_COMPLETE);
  const failed = statusForEvent(exit(3, null, false), false, false);
  assert.equal(failed?.state, TaskState.TASK_STATE_FAILED);
  assert.match(failed?.err ?? '', /exit code 3/);
  assert.equal(
    statusForEvent(exit(null, 'SIGTERM', true), false, true)?.state,
    TaskState.TASK_STATE_SHUTDOWN,
  );
  assert.equal(statusForEvent(exit(null, 'SIGTERM', true), false, false)?.state, TaskState.TASK_STATE_FAILED);
});

test('the run spec takes command and K=V env from the task, with PATH defaulted and the sandbox namespace', () => {
  const t = withSpec(task('a', 's', 'n1', 4, TaskState.TASK_STATE_ASSIGNED, {}));
  const spec = runSpecFor(t, { logDir: '/tmp/x', maxLogBytes: 10, stopGracePeriodMs: 5, netnsName: 'md-ta' });
  assert.deepEqual(spec.command, ['sleep', '30']);
  assert.equal(spec.env['A'], '1');
  assert.equal(spec.env['B'], 'x=y');
  assert.ok(spec.env['PATH']?.includes('/usr/bin'));
  assert.equal(spec.env['MESHD_TASK_SLOT'], '4');
  assert.equal(spec.netnsName, 'md-ta');
  assert.equal(spec.healthCheck, undefined);
});

test('a task is drained once no applied service lists it as an active endpoint', () => {
  const state = (s: EndpointState) => ({
    version: 1,
    node: undefined,
    dns: undefined,
    networks: [],
    sandboxes: [],
    remoteEndpoints: [],
    services: [
      {
        id: 's',
        name: 's',
        vips: [],
        ports: [],
        endpointMode: 1,
        lb: undefined,
        endpoints: [
          { taskId: 'a', taskName: 'a', nodeId: 'n1', networkId: 'x', address: '10.0.0.2', state: s },
        ],
      },
    ],
  });
  assert.equal(isDrained(state(EndpointState.ENDPOINT_STATE_ACTIVE), 'a'), false);
  assert.equal(isDrained(state(EndpointState.ENDPOINT_STATE_DRAINING), 'a'), true);
  assert.equal(isDrained(state(EndpointState.ENDPOINT_STATE_ACTIVE), 'b'), true);
});

test('a new task waits for the TCP target ports of its own service only, never for UDP ones', () => {
  const state = DesiredState.fromPartial({
    sandboxes: [
      { taskId: 'a', serviceId: 'web' },
      { taskId: 'b', serviceId: 'dns' },
      { taskId: 'c', serviceId: 'batch' },
    ],
    services: [
      {
        id: 'web',
        ports: [
          { protocol: Protocol.PROTOCOL_TCP, targetPort: 80, publishedPort: 8080 },
          { protocol: Protocol.PROTOCOL_TCP, targetPort: 80, publishedPort: 8081 },
          { protocol: Protocol.PROTOCOL_TCP, targetPort: 443, publishedPort: 8443 },
        ],
      },
      { id: 'dns', ports: [{ protocol: Protocol.PROTOCOL_UDP, targetPort: 53 }] },
    ],
  });
  assert.deepEqual(readinessPorts(state, 'a'), [80, 443]);
  assert.deepEqual(readinessPorts(state, 'b'), []);
  assert.deepEqual(readinessPorts(state, 'c'), []);
  assert.deepEqual(readinessPorts(state, 'nosuch'), []);
  assert.deepEqual(readinessPorts(undefined, 'a'), []);
});
