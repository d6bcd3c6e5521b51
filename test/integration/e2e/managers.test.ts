/**
 * Three managers on a 3-host netns lab (prefix `mde3`): init on h1, h2 and
 * h3 join with the manager token (Raft voters), then kill -9 of the leader.
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

const PREFIX = 'mde3';
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

describe('three managers on a 3-host netns lab', () => {
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
  let via = 'h1';
  const meshctl = (...argv: string[]) =>
    spawnSync(MESHCTL, ['--socket', join(dir, `${via}.sock`), ...argv], {
      encoding: 'utf8',
      timeout: 120_000,
    });
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
    const token = meshctl('join-token', '-q', 'manager').stdout.trim();
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

  test('kill -9 of the leader: another manager answers, no task lost, the dead node is marked down', async () => {
    const created = meshctl(
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '3',
      '--',
      '/usr/bin/env',
      'node',
      TASK_SERVER,
      MARKER,
      '80',
    );
    assert.equal(created.status, 0, created.stderr);
    assert.match(meshctl('node', 'ls').stdout, /h3\s+ready\s+active\s+manager/);
    daemons.get('h1')?.kill('SIGKILL');
    via = 'h2';
    await waitFor(
      'h1 down and 3 tasks running on h2/h3 (asked through h2)',
      () => {
        const nodes = meshctl('node', 'ls');
        const ps = meshctl('service', 'ps', 'web').stdout;
        return (
          nodes.status === 0 &&
          /h1\s+down/.test(nodes.stdout) &&
          (ps.match(/web\.\d+\s+h[23]\s+running\s+running/g) ?? []).length === 3
        );
      },
      45_000,
    );
  });
});
