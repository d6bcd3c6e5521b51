import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { TaskProcess } from '../../../dataplane/executor/task-process.js';
import type { TaskEvent, TaskRunSpec } from '../../../dataplane/executor/types.js';
import { systemClock } from '../../../src/common/clock.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import { waitFor } from '../../lib/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'meshd-exec-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const log = subsystemLogger('executor-test');

function run(spec: Partial<TaskRunSpec> & Pick<TaskRunSpec, 'taskId' | 'command'>) {
  const events: TaskEvent[] = [];
  const task = new TaskProcess(
    {
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
      logDir: dir,
      maxLogBytes: 64 * 1024,
      stopGracePeriodMs: 300,
      ...spec,
    },
    { clock: systemClock, log, cgroup: undefined, onEvent: (e) => events.push(e) },
  );
  return { task, events };
}

describe('task processes (real processes on this host)', () => {
  it('exit code 0 reports complete, with stdout and stderr kept in the task logs', async () => {
    const { task, events } = run({
      taskId: 'ok1',
      command: ['sh', '-c', 'echo hello; echo oops >&2; exit 0'],
    });
    await task.start();
    const exit = await task.wait();
    assert.equal(exit.outcome, 'complete');
    assert.equal(exit.exitCode, 0);
    assert.equal(events[0]?.type, 'started');
    assert.equal(readFileSync(join(dir, 'ok1.stdout.log'), 'utf8'), 'hello\n');
    assert.equal(readFileSync(join(dir, 'ok1.stderr.log'), 'utf8'), 'oops\n');
  });

  it('a non-zero exit code reports failed', async () => {
    const { task } = run({ taskId: 'bad1', command: ['sh', '-c', 'exit 3'] });
    await task.start();
    const exit = await task.wait();
    assert.equal(exit.outcome, 'failed');
    assert.equal(exit.exitCode, 3);
  });

  it('passes exactly the task environment, not the daemon one', async () => {
    const { task } = run({
      taskId: 'env1',
      command: ['sh', '-c', 'echo "$GREETING-$HOME"'],
      env: { GREETING: 'hi', PATH: '/usr/bin:/bin' },
    });
    await task.start();
    await task.wait();
    assert.equal(readFileSync(join(dir, 'env1.stdout.log'), 'utf8'), 'hi-\n');
  });

  it('a process that dies is reported within a second', async () => {
    const { task } = run({ taskId: 'die1', command: ['sleep', '30'] });
    const pid = await task.start();
    const t0 = Date.now();
    process.kill(pid, 'SIGKILL');
    const exit = await task.wait();
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(exit.outcome, 'failed');
    assert.equal(exit.signal, 'SIGKILL');
    assert.equal(exit.stopRequested, false);
  });

  it('stop drains first, then SIGTERM; a task that exits on SIGTERM does not wait for the grace period', async () => {
    const order: string[] = [];
    const { task } = run({ taskId: 'stop1', command: ['sleep', '30'], stopGracePeriodMs: 5000 });
    await task.start();
    const t0 = Date.now();
    const exit = await task.stop({
      drain: async () => {
        order.push('drain');
      },
    });
    order.push('exited');
    assert.deepEqual(order, ['drain', 'exited']);
    assert.equal(exit.signal, 'SIGTERM');
    assert.equal(exit.stopRequested, true);
    assert.ok(Date.now() - t0 < 2000);
  });

  it('a task that ignores SIGTERM is killed after the grace period', async () => {
    const { task } = run({
      taskId: 'stubborn1',
      command: ['sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 0.05; done'],
      stopGracePeriodMs: 300,
    });
    await task.start();
    await new Promise((r) => setTimeout(r, 150));
    const exit = await task.stop();
    assert.equal(exit.signal, 'SIGKILL');
  });

  it('a drain that hangs is cut off at its deadline', async () => {
    const { task } = run({ taskId: 'hang1', command: ['sleep', '30'] });
    await task.start();
    const t0 = Date.now();
    await task.stop({ drain: () => new Promise(() => {}), drainTimeoutMs: 200 });
    assert.ok(Date.now() - t0 < 2000);
  });

  it('an HTTP health check reports healthy, then unhealthy when the endpoint fails', async () => {
    let status = 200;
    const server: Server = createServer((_req, res) => {
      res.writeHead(status).end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const { task, events } = run({
      taskId: 'hc1',
      command: ['sleep', '30'],
      healthCheck: {
        probe: { kind: 'http', port, path: '/health' },
        intervalMs: 50,
        timeoutMs: 1000,
        retries: 2,
        startPeriodMs: 0,
      },
    });
    try {
      await task.start();
      await waitFor(
        'a healthy report',
        () => events.some((e) => e.type === 'health' && e.status === 'healthy'),
        5000,
      );
      status = 503;
      await waitFor(
        'an unhealthy report',
        () => events.some((e) => e.type === 'health' && e.status === 'unhealthy'),
        5000,
      );
    } finally {
      await task.stop();
      server.close();
    }
  });

  it('refuses to start a program that does not exist, with its name in the error', async () => {
    const { task } = run({ taskId: 'nope1', command: ['/nonexistent/prog'] });
    await assert.rejects(task.start(), /nonexistent/);
  });
});
