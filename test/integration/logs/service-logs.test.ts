/**
 * `meshctl service logs` across the cluster (issue 9) on a 3-host netns lab
 * (prefix `mdg`, test/integration/e2e/mesh-lab.ts): h1 is the manager, h2
 * and h3 workers; a 3-replica service spreads one task to each host.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MESHCTL, type MeshLab, startMeshLab } from '../e2e/mesh-lab.js';

const LOG_TASK = fileURLToPath(new URL('fixtures/log-task.mjs', import.meta.url));
const PREFIX_LINE = /^web\.(\d)\.([a-z0-9]{12})@(h[123]) \| (.*)$/;

describe('service logs across a 3-host netns lab', () => {
  let lab: MeshLab;
  const trigger = join(tmpdir(), `mdg-logs-trigger-${process.pid}`);
  const meshctl = (...argv: string[]) => lab.meshctl(argv);

  before(async () => {
    rmSync(trigger, { force: true });
    lab = await startMeshLab({ prefix: 'mdg', joinAs: 'worker' });
    const r = meshctl(
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '3',
      '--',
      '/usr/bin/env',
      'node',
      LOG_TASK,
      trigger,
      lab.marker,
    );
    assert.equal(r.status, 0, r.stderr);
    const ps = meshctl('service', 'ps', 'web').stdout;
    for (const h of ['h1', 'h2', 'h3']) assert.match(ps, new RegExp(`web\\.\\d+\\s+${h}\\s+running`), ps);
  });

  after(async () => {
    rmSync(trigger, { force: true });
    await lab?.teardown();
    killTasksWithMarker(lab?.marker);
  });

  test('logs on the manager shows the lines of the tasks on every node with their task@node prefix', async () => {
    await lab.waitFor(
      'two lines from each of the 3 tasks',
      () => meshctl('service', 'logs', 'web').stdout.trim().split('\n').length >= 6,
      30_000,
    );
    const r = meshctl('service', 'logs', 'web');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    const lines = r.stdout.trim().split('\n');
    const nodes = new Set<string>();
    for (const line of lines) {
      const m = PREFIX_LINE.exec(line);
      assert.ok(m, `unexpected line ${JSON.stringify(line)}`);
      const [, slot, shortTask, node, text] = m as unknown as [string, string, string, string, string];
      nodes.add(node);
      // The task's own view of its slot and ID matches the prefix the broker gave it.
      assert.match(text, new RegExp(`^(start|second) slot${slot}-${shortTask}`));
    }
    assert.deepEqual([...nodes].sort(), ['h1', 'h2', 'h3']);
    assert.equal(lines.length, 6, r.stdout);
  });

  test('--tail 1 gives one line per task', () => {
    const r = meshctl('service', 'logs', '--tail', '1', 'web');
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 3, r.stdout);
    for (const line of lines) assert.match(line, /\| second slot\d-/);
  });

  test('--follow shows a line written after it started, and a task placed later, and ends cleanly on SIGINT', async () => {
    const socket = socketOf(lab, 'h1');
    const child = spawn(MESHCTL, ['--socket', socket, 'service', 'logs', '--follow', '--tail', '0', 'web'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      // Each poll writes a new word, so every task prints a new line each
      // time: some are written after the subscription reached its node.
      let writes = 0;
      await lab.waitFor(
        'a line written after the start from each of the 3 tasks',
        () => {
          writes += 1;
          writeFileSync(trigger, `after-start-${writes}`);
          const slots = new Set([...out.matchAll(/\| trigger after-start-\d+ (slot\d)-/g)].map((m) => m[1]));
          return slots.size === 3;
        },
        30_000,
      );
      assert.ok(!/\| (start|second) /.test(out), `--tail 0 printed old lines: ${out}`);
      // A task placed after the follow started shows from its first line.
      const scaled = meshctl('service', 'scale', 'web=4');
      assert.equal(scaled.status, 0, scaled.stderr);
      await lab.waitFor(
        'the new task’s first line',
        () => /^web\.4\.[a-z0-9]{12}@h[123] \| start slot4-/m.test(out),
        30_000,
      );
      child.kill('SIGINT');
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('hung'), 15_000))]);
      assert.equal(code, 0, `meshctl did not end cleanly on SIGINT: ${code} ${err}`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  test("with a worker's meshd killed, logs still shows the other tasks' lines and warns about that node", async () => {
    lab.killDaemon('h3');
    const started = Date.now();
    const r = meshctl('service', 'logs', '--tail', '1', 'web');
    const tookMs = Date.now() - started;
    assert.equal(r.status, 0, r.stderr);
    const nodes = r.stdout
      .trim()
      .split('\n')
      .map((l) => PREFIX_LINE.exec(l)?.[3]);
    assert.ok(nodes.includes('h1') && nodes.includes('h2'), r.stdout);
    assert.ok(!nodes.includes('h3'), r.stdout);
    assert.match(r.stderr, /^warning: node h3 \(.*\) .*: logs of its \d+ tasks? are missing$/m);
    assert.ok(tookMs < 20_000, `took ${tookMs} ms`);
    // Teardown waits for a settled cluster: a stop while h3's tasks are being
    // replaced raced the agent's task start (see dataplane/agent/agent.ts startTask).
    await lab.waitFor(
      "h3's task replaced",
      () => {
        const ps = meshctl('service', 'ps', 'web').stdout;
        const wanted = (ps.match(/\sweb\.\d+\s+\S+\s+running\s/g) ?? []).length;
        return wanted > 0 && (ps.match(/\sweb\.\d+\s+h[12]\s+running\s+running/g) ?? []).length === wanted;
      },
      60_000,
    );
  });
});

function socketOf(lab: MeshLab, name: string): string {
  const flags = lab.flags(lab.host(name));
  return flags[flags.indexOf('--socket') + 1] ?? '';
}

/** The lab's teardown kills its own fixture's orphans; this one's are found by the marker too. */
function killTasksWithMarker(marker: string | undefined): void {
  if (marker === undefined) return;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const args = cmdline.split('\0');
    if (args.includes(marker) && args.includes(LOG_TASK)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
  }
}
