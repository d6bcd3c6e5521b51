import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BoundedLogFile } from '../../../dataplane/executor/bounded-log.js';
import { cgroupLimitFiles, findCgroupV2Mount } from '../../../dataplane/executor/cgroup.js';
import { launchArgv, validateRunSpec } from '../../../dataplane/executor/task-process.js';
import type { TaskRunSpec } from '../../../dataplane/executor/types.js';

const dir = mkdtempSync(join(tmpdir(), 'meshd-exec-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function spec(overrides: Partial<TaskRunSpec> = {}): TaskRunSpec {
  return {
    taskId: 't1',
    command: ['/bin/true'],
    env: {},
    logDir: dir,
    maxLogBytes: 4096,
    stopGracePeriodMs: 100,
    ...overrides,
  };
}

describe('launch argv', () => {
  it('enters the namespace, then the cgroup, then drops privileges, then execs the command', () => {
    const argv = launchArgv(
      spec({ netnsName: 'mdx-t1', user: { uid: 1000, gid: 1000 }, command: ['srv', '-p', '80'] }),
      '/cg/meshd/t1',
    );
    assert.deepEqual(argv.slice(0, 4), ['ip', 'netns', 'exec', 'mdx-t1']);
    assert.equal(argv[4], 'sh');
    assert.equal(argv[7], '/cg/meshd/t1');
    assert.deepEqual(argv.slice(8), [
      'setpriv',
      '--reuid=1000',
      '--regid=1000',
      '--clear-groups',
      '--',
      'srv',
      '-p',
      '80',
    ]);
  });

  it('runs the bare command when there is no sandbox, cgroup or user', () => {
    assert.deepEqual(launchArgv(spec({ command: ['a', 'b'] }), undefined), ['a', 'b']);
  });
});

describe('task spec validation names the field', () => {
  it('rejects an empty command', () => {
    assert.throws(() => validateRunSpec(spec({ command: [] })), { field: 'command' });
  });
  it('rejects a namespace name that could smuggle arguments', () => {
    assert.throws(() => validateRunSpec(spec({ netnsName: '-n x' })), { field: 'netnsName' });
  });
  it('rejects a health check interval below 10 ms', () => {
    const healthCheck = {
      probe: { kind: 'tcp' as const, port: 80 },
      intervalMs: 1,
      timeoutMs: 100,
      retries: 3,
      startPeriodMs: 0,
    };
    assert.throws(() => validateRunSpec(spec({ healthCheck })), { field: 'healthCheck.intervalMs' });
  });
  it('rejects a health check port outside 1..65535', () => {
    const healthCheck = {
      probe: { kind: 'http' as const, port: 70000, path: '/' },
      intervalMs: 100,
      timeoutMs: 100,
      retries: 3,
      startPeriodMs: 0,
    };
    assert.throws(() => validateRunSpec(spec({ healthCheck })), { field: 'healthCheck.probe.port' });
  });
});

describe('cgroup v2 limits', () => {
  it('maps limits to interface files (cpu as quota per 100 ms period)', () => {
    assert.deepEqual(cgroupLimitFiles({ memoryBytes: 64 * 1024 * 1024, cpuMillicores: 500, pids: 100 }), {
      'memory.max': '67108864',
      'cpu.max': '50000 100000',
      'pids.max': '100',
    });
  });
  it('finds the cgroup2 mount among the mounts', () => {
    const mounts = 'proc /proc proc rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n';
    assert.equal(findCgroupV2Mount(mounts), '/sys/fs/cgroup/unified');
    assert.equal(findCgroupV2Mount('proc /proc proc rw 0 0\n'), undefined);
  });
});

describe('bounded log files', () => {
  it('never grow past the limit: one rotation keeps at most twice the limit on disk', () => {
    const path = join(dir, 'out.log');
    const log = new BoundedLogFile(path, 1024);
    const line = Buffer.from('x'.repeat(99) + '\n');
    for (let i = 0; i < 100; i++) log.write(line);
    log.close();
    assert.ok(statSync(path).size <= 1024);
    assert.equal(statSync(`${path}.1`).size, 1024);
    assert.match(readFileSync(path, 'utf8'), /^x+/);
  });
});
