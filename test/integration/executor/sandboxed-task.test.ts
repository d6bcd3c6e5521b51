import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TaskProcess } from '../../../dataplane/executor/task-process.js';
import type { TaskEvent } from '../../../dataplane/executor/types.js';
import { systemClock } from '../../../src/common/clock.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import { waitFor } from '../../lib/wait.js';

// A namespace of this test's own, named by exact name and removed by that name.
const ns = `mdx${process.pid % 100000}`;
const dir = mkdtempSync(join(tmpdir(), 'meshd-exec-int-'));

function deleteNamespace(): void {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {}
}

before(() => {
  deleteNamespace();
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
});
after(() => {
  deleteNamespace();
  rmSync(dir, { recursive: true, force: true });
});

describe('tasks in their sandbox namespace (root)', () => {
  it('runs inside the sandbox namespace and its TCP health check probes from inside it', async () => {
    const events: TaskEvent[] = [];
    const server = "require('http').createServer((q,s)=>s.end('up')).listen(8080,'127.0.0.1')";
    const task = new TaskProcess(
      {
        taskId: 'sbx1',
        command: [process.execPath, '-e', server],
        env: { PATH: '/usr/bin:/bin' },
        netnsName: ns,
        logDir: dir,
        maxLogBytes: 64 * 1024,
        stopGracePeriodMs: 2000,
        healthCheck: {
          probe: { kind: 'tcp', port: 8080 },
          intervalMs: 100,
          timeoutMs: 2000,
          retries: 3,
          startPeriodMs: 5000,
        },
      },
      {
        clock: systemClock,
        log: subsystemLogger('executor-test'),
        cgroup: undefined,
        onEvent: (e) => events.push(e),
      },
    );
    const pid = await task.start();
    try {
      await waitFor(
        'a healthy report',
        () => events.some((e) => e.type === 'health' && e.status === 'healthy'),
        10_000,
      );
      // Checked once healthy: right after spawn the launcher may not have entered the namespace yet.
      const taskNs = statSync(`/proc/${pid}/ns/net`).ino;
      assert.equal(taskNs, statSync(`/run/netns/${ns}`).ino, 'task runs in its sandbox namespace');
      // The port is inside the sandbox only: the host's loopback does not have it.
      const hostView = execFileSync(
        'bash',
        ['-c', 'exec 3<>/dev/tcp/127.0.0.1/8080 && echo open || echo closed'],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      ).trim();
      assert.notEqual(hostView, 'open');
    } finally {
      const exit = await task.stop();
      assert.equal(exit.stopRequested, true);
    }
  });
});
