/**
 * The issue's flow on a 3-host netns lab (prefix `mde2`): real meshd
 * processes (nsenter --net into each host; the mount namespace stays the
 * host's so the namespaces meshd creates are visible), init on h1, workers
 * h2 and h3 join with the token, meshctl over h1's socket.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type LabHost, labDown, labUp } from '../../../scripts/lab/lab.js';
import { waitFor as waitUntil } from '../../lib/wait.js';

const PREFIX = 'mde2';
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const MESHD = join(ROOT, 'bin/meshd');
const MESHCTL = join(ROOT, 'bin/meshctl');
const TASK_SERVER = join(ROOT, 'test/integration/dataplane/fixtures/task-server.mjs');
/** Task argument unique to this run: tasks orphaned by kill -9 of their meshd are found by it. */
const MARKER = `e2e-${process.pid}`;

function killOrphanedTasks(): void {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.split('\0').includes(MARKER) && cmdline.includes(TASK_SERVER))
      process.kill(Number(pid), 'SIGKILL');
  }
}

describe('meshd + meshctl on a 3-host netns lab', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-e2e-'));
  let hosts: LabHost[] = [];
  const daemons = new Map<string, ChildProcess>();

  const flags = (h: LabHost) => [
    '--state-dir',
    join(dir, h.name),
    '--socket',
    join(dir, `${h.name}.sock`),
    '--listen-address',
    `${h.address}:4242`,
    '--raft-listen-address',
    `${h.address}:4243`,
    '--netns-prefix',
    h.netnsPrefix,
    '--hostname',
    h.name,
  ];
  const inHost = (h: LabHost, argv: string[]) =>
    spawnSync('nsenter', [`--net=/run/netns/${h.netns}`, ...argv], { encoding: 'utf8', timeout: 60_000 });
  const meshctl = (...argv: string[]) =>
    spawnSync(MESHCTL, ['--socket', join(dir, 'h1.sock'), ...argv], { encoding: 'utf8', timeout: 120_000 });
  const startDaemon = (h: LabHost) => {
    const child = spawn('nsenter', [`--net=/run/netns/${h.netns}`, MESHD, 'run', ...flags(h)], {
      stdio: 'ignore',
      env: { ...process.env, LOG_LEVEL: 'warn' },
    });
    daemons.set(h.name, child);
  };
  const waitFor = (what: string, probe: () => boolean, timeoutMs: number) =>
    waitUntil(what, probe, timeoutMs, 250);

  before(async () => {
    await labDown(PREFIX);
    hosts = (await labUp({ prefix: PREFIX, hosts: 3 })).hosts;
    const [h1, h2, h3] = hosts as [LabHost, LabHost, LabHost];
    const init = inHost(h1, [MESHD, 'init', ...flags(h1)]);
    assert.equal(init.status, 0, init.stderr);
    startDaemon(h1);
    await waitFor('h1 socket', () => meshctl('node', 'ls').status === 0, 30_000);
    const token = meshctl('join-token', '-q', 'worker').stdout.trim();
    for (const h of [h2, h3]) {
      const j = inHost(h, [MESHD, 'join', '--token', token, `${h1.address}:4242`, ...flags(h)]);
      assert.equal(j.status, 0, j.stderr);
      startDaemon(h);
    }
    await waitFor(
      '3 ready nodes',
      () => (meshctl('node', 'ls').stdout.match(/\sready\s/g) ?? []).length === 3,
      30_000,
    );
  });

  after(async () => {
    for (const child of daemons.values()) child.kill('SIGTERM');
    await Promise.all(
      [...daemons.values()].map(
        (c) =>
          new Promise<void>((resolve) =>
            c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()),
          ),
      ),
    );
    killOrphanedTasks();
    await labDown(PREFIX);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a wrong join token gives a one-line error and writes nothing', () => {
    const h3 = hosts[2]!;
    const bad =
      'MESHTKN-1-0000000000000000000000000000000000000000000000000000000000000000-abcdefghijklmnopqrstuvwxy';
    const r = inHost(h3, [
      MESHD,
      'join',
      '--token',
      bad,
      `${hosts[0]!.address}:4242`,
      ...flags(h3),
      '--state-dir',
      join(dir, 'bad'),
    ]);
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  });

  test('service create with 5 replicas converges with tasks on all three hosts', () => {
    const r = meshctl(
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '5',
      '-p',
      '8080:80',
      '--',
      '/usr/bin/env',
      'node',
      TASK_SERVER,
      'web',
      '80',
      // Found by killOrphanedTasks once h3's meshd is killed (the fixture ignores it).
      MARKER,
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /web: 5\/5 tasks running\nweb: converged/);
    const ps = meshctl('service', 'ps', 'web').stdout;
    for (const h of ['h1', 'h2', 'h3'])
      assert.match(ps, new RegExp(`web\\.\\d+\\s+${h}\\s+running\\s+running`));
  });

  test('a bad spec and an unknown node each give a one-line error', () => {
    const spec = meshctl('service', 'create', '--name', 'web_2', '--', '/bin/true');
    assert.equal(spec.status, 1);
    assert.equal(spec.stderr.trim().split('\n').length, 1);
    const node = meshctl('node', 'inspect', 'nosuch');
    assert.equal(node.status, 1);
    assert.match(node.stderr, /^meshctl: .*nosuch/);
  });

  test('the published port answers on every host, whichever task (local or remote) serves it', () => {
    // Client on the next host, so every request crosses the underlay; 15 requests
    // per host spread over the 5 tasks on 3 hosts, so remote tasks serve some.
    const failures: string[] = [];
    hosts.forEach((target, i) => {
      const client = hosts[(i + 1) % hosts.length]!;
      for (let n = 0; n < 15; n++) {
        const r = inHost(client, ['curl', '-s', '--max-time', '3', `http://${target.address}:8080/`]);
        if (r.status !== 0 || !r.stdout.startsWith('web '))
          failures.push(`${client.name} -> ${target.name}:8080 (${r.status})`);
      }
    });

    assert.deepEqual(failures, []);
  });

  test('inside a task, the embedded DNS answers the service name with its VIP and tasks.<name> with task IPs', async () => {
    const h1 = hosts[0]!;
    const sandbox = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .stdout.split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .find((name) => name.startsWith(`${h1.netnsPrefix}t`));
    assert.ok(sandbox, `no task sandbox of h1 (prefix ${h1.netnsPrefix}t) among the namespaces`);
    const dig = (name: string) =>
      spawnSync(
        'ip',
        ['netns', 'exec', sandbox, 'dig', '@127.0.0.11', '+short', '+time=2', '+tries=1', name],
        {
          encoding: 'utf8',
          timeout: 10_000,
        },
      ).stdout.trim();
    await waitFor('web to resolve inside the task', () => dig('web') !== '', 20_000);
    const vip = dig('web');
    assert.match(vip, /^\d+\.\d+\.\d+\.\d+$/);
    const taskIps = dig('tasks.web').split('\n');
    assert.equal(taskIps.length, 5, taskIps.join(' '));
    assert.ok(!taskIps.includes(vip));
  });

  test('kill -9 of a worker: node down and its tasks running elsewhere', async () => {
    daemons.get('h3')?.kill('SIGKILL');
    await waitFor(
      'h3 down and 5 tasks running on h1/h2',
      () => {
        const nodes = meshctl('node', 'ls').stdout;
        const ps = meshctl('service', 'ps', 'web').stdout;
        return (
          /h3\s+down/.test(nodes) &&
          (ps.match(/web\.\d+\s+h[12]\s+running\s+running/g) ?? []).length === 5 &&
          !/h3\s+running\s+running/.test(ps)
        );
      },
      30_000,
    );
  });
});
