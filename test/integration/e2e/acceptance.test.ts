/**
 * Issue 9's integration acceptance beyond cluster.test.ts, on a 3-host netns
 * lab (prefix `mdea`, nftables backend): drain without a failed request,
 * worker death cleaned out of every remaining LB within 10 s, `meshctl diag`.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type MeshLab, startMeshLab, TASK_SERVER } from './mesh-lab.js';

const REQUEST_LOOP = join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures/request-loop.mjs');

interface LoopResult {
  requests: number;
  failures: string[];
  answeredBy: Record<string, number>;
}

interface NodeJson {
  meta: { id: string };
  hostname: string;
}

interface TaskJson {
  nodeId: string;
  desiredState: string;
  status?: { state?: string; message?: string; timestamp?: { unixMs?: string } };
  networks?: { address?: string }[];
}

describe('issue 9 acceptance on a 3-host netns lab', () => {
  let lab: MeshLab;

  before(async () => {
    lab = await startMeshLab({ prefix: 'mdea', joinAs: 'worker' });
    const r = lab.meshctl([
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
      lab.marker,
    ]);
    assert.equal(r.status, 0, r.stderr);
  });

  after(async () => {
    await lab?.teardown();
  });

  const nodeIds = () =>
    new Map(
      (JSON.parse(lab.meshctl(['node', 'ls', '--format', 'json']).stdout) as NodeJson[]).map((n) => [
        n.meta.id,
        n.hostname,
      ]),
    );
  const tasks = () =>
    JSON.parse(lab.meshctl(['service', 'ps', 'web', '--format', 'json']).stdout) as TaskJson[];
  const runningOn = (ts: TaskJson[], hosts: Map<string, string>) =>
    ts
      .filter((t) => t.desiredState === 'TASK_STATE_RUNNING' && t.status?.state === 'TASK_STATE_RUNNING')
      .map((t) => hosts.get(t.nodeId) ?? t.nodeId);

  test('node update --availability drain moves tasks off while a client loop on every host sees no failed request', async () => {
    const hosts = nodeIds();
    assert.ok(runningOn(tasks(), hosts).includes('h3'), 'h3 runs no task before the drain');
    // One loop per host, each hitting the next host's published port (crossing the underlay).
    const loops = lab.hosts.map((client, i) => {
      const target = lab.hosts[(i + 1) % lab.hosts.length]!;
      return runLoop(client.netns, [`http://${target.address}:8080/`]);
    });
    try {
      await sleep(1000);
      const drain = lab.meshctl(['node', 'update', '--availability', 'drain', 'h3']);
      assert.equal(drain.status, 0, drain.stderr);
      await lab.waitFor(
        '5 tasks running on h1/h2 and none left on h3',
        () => {
          const ts = tasks();
          const running = runningOn(ts, hosts);
          const onH3 = ts.filter(
            (t) =>
              hosts.get(t.nodeId) === 'h3' &&
              !['TASK_STATE_SHUTDOWN', 'TASK_STATE_COMPLETE'].includes(t.status?.state ?? ''),
          );
          return running.length === 5 && !running.includes('h3') && onH3.length === 0;
        },
        30_000,
      );
      // Keep the clients going while the last stopped task's connections settle.
      await sleep(1000);
    } finally {
      for (const loop of loops) loop.child.stdin?.end();
    }
    const results = await Promise.all(loops.map((l) => l.result));
    const timeline = () =>
      tasks()
        .map(
          (t) =>
            `${hosts.get(t.nodeId)} ${t.status?.state} ${t.status?.timestamp?.unixMs} ${t.status?.message}`,
        )
        .join('; ');
    for (const r of results) {
      assert.deepEqual(
        r.failures,
        [],
        `failed requests during the drain: ${JSON.stringify(r)}; tasks: ${timeline()}`,
      );
      assert.ok(r.requests >= 20, `the client loop made only ${r.requests} requests`);
    }
  });

  test('kill -9 of a worker and its tasks: tasks run elsewhere and leave every remaining host LB within 10 s', async () => {
    const hosts = nodeIds();
    const deadAddresses = tasks()
      .filter((t) => hosts.get(t.nodeId) === 'h2' && t.desiredState === 'TASK_STATE_RUNNING')
      .flatMap((t) => (t.networks ?? []).map((n) => (n.address ?? '').split('/')[0] ?? ''))
      .filter((a) => a !== '');
    assert.ok(deadAddresses.length > 0, 'h2 runs no task to kill');
    const lbMentions = (hostName: string) =>
      deadAddresses.filter((address) => {
        const pattern = new RegExp(`(^|[^0-9.])${address.replaceAll('.', '\\.')}([^0-9]|$)`, 'm');
        return nftRulesets(lab, hostName).some((ruleset) => pattern.test(ruleset));
      });
    assert.ok(lbMentions('h1').length > 0, 'h1 LB does not list the tasks of h2 before the kill');

    const killedAt = Date.now();
    lab.killDaemon('h2');
    assert.ok(lab.killTasksOf('h2') > 0, 'no task process of h2 was found to kill');
    await lab.waitFor(
      'the tasks of h2 gone from the LB of h1 and h3',
      () => lbMentions('h1').length === 0 && lbMentions('h3').length === 0,
      10_000,
    );
    const removedMs = Date.now() - killedAt;
    await lab.waitFor(
      '5 tasks running on h1',
      () => runningOn(tasks(), hosts).filter((h) => h === 'h1').length === 5,
      20_000,
    );
    for (const [client, target] of [
      ['h3', 'h1'],
      ['h1', 'h3'],
    ] as const) {
      const r = lab.inHost(lab.host(client), [
        'curl',
        '-s',
        '--max-time',
        '3',
        `http://${lab.host(target).address}:8080/`,
      ]);
      assert.equal(
        r.status,
        0,
        `${client} -> ${target}:8080 failed after the kill (LB clean after ${removedMs} ms)`,
      );
      assert.match(r.stdout, /^web /);
    }
  });
});

/** The nftables rulesets of a host: its own namespace and every namespace meshd made for it. */
function nftRulesets(lab: MeshLab, hostName: string): string[] {
  const own = lab.inHost(lab.host(hostName), ['nft', 'list', 'ruleset']).stdout;
  return [
    own,
    ...lab
      .namespacesOf(hostName)
      .map(
        (ns) => spawnSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'ruleset'], { encoding: 'utf8' }).stdout,
      ),
  ];
}

function runLoop(netns: string, urls: string[]): { child: ChildProcess; result: Promise<LoopResult> } {
  const child = spawn(
    'nsenter',
    [`--net=/run/netns/${netns}`, process.execPath, REQUEST_LOOP, '5000', '90000', ...urls],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const result = new Promise<LoopResult>((resolve, reject) =>
    child.once('exit', () => {
      try {
        resolve(JSON.parse(out) as LoopResult);
      } catch {
        reject(new Error(`the request loop in ${netns} printed no result: ${out}`));
      }
    }),
  );
  return { child, result };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
