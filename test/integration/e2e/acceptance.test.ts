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

interface DiagJson {
  ok: boolean;
  checks: { check: string; status: string }[];
  facts: {
    node: { role: string };
    session: { connected: boolean; manager: string };
    loadBalancer: {
      backend: string;
      dispatched: { name: string; endpoints: { state: string }[] }[];
      virtualServices: unknown[];
    };
    overlayNetworks: { peers: string[] }[];
  };
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

  // The worker drained (and later asked for diag) and the worker killed. Under
  // heavy load a worker can miss heartbeats and lose its tasks before the drain,
  // so the drained one is whichever runs tasks then (h3 when both do).
  let drained = 'h3';
  let victim = 'h2';

  test('node update --availability drain moves tasks off while a client loop on every host sees no failed request', async () => {
    const hosts = nodeIds();
    await lab.waitFor('5 tasks running', () => runningOn(tasks(), hosts).length === 5, 60_000);
    const before = runningOn(tasks(), hosts);
    if (!before.includes('h3')) [drained, victim] = ['h2', 'h3'];
    assert.ok(before.includes(drained), `no worker runs a task before the drain: ${before.join(' ')}`);
    // One loop per host, each hitting the next host's published port (crossing the underlay).
    const loops = lab.hosts.map((client, i) => {
      const target = lab.hosts[(i + 1) % lab.hosts.length]!;
      return runLoop(client.netns, [`http://${target.address}:8080/`]);
    });
    try {
      await sleep(1000);
      const drain = lab.meshctl(['node', 'update', '--availability', 'drain', drained]);
      assert.equal(drain.status, 0, drain.stderr);
      await lab.waitFor(
        `5 tasks running elsewhere and none left on ${drained}`,
        () => {
          const ts = tasks();
          const running = runningOn(ts, hosts);
          const left = ts.filter(
            (t) =>
              hosts.get(t.nodeId) === drained &&
              !['TASK_STATE_SHUTDOWN', 'TASK_STATE_COMPLETE'].includes(t.status?.state ?? ''),
          );
          return running.length === 5 && !running.includes(drained) && left.length === 0;
        },
        60_000,
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
      .filter((t) => hosts.get(t.nodeId) === victim && t.desiredState === 'TASK_STATE_RUNNING')
      .flatMap((t) => (t.networks ?? []).map((n) => (n.address ?? '').split('/')[0] ?? ''))
      .filter((a) => a !== '');
    assert.ok(deadAddresses.length > 0, `${victim} runs no task to kill`);
    const lbMentions = (hostName: string) =>
      deadAddresses.filter((address) => {
        const pattern = new RegExp(`(^|[^0-9.])${address.replaceAll('.', '\\.')}([^0-9]|$)`, 'm');
        return nftRulesets(lab, hostName).some((ruleset) => pattern.test(ruleset));
      });
    assert.ok(
      lbMentions('h1').length > 0,
      `the LB of h1 does not list the tasks of ${victim} before the kill`,
    );

    const killedAt = Date.now();
    lab.killDaemon(victim);
    assert.ok(lab.killTasksOf(victim) > 0, `no task process of ${victim} was found to kill`);
    await lab.waitFor(
      `the tasks of ${victim} gone from the LB of h1 and ${drained}`,
      () => lbMentions('h1').length === 0 && lbMentions(drained).length === 0,
      10_000,
    );
    const removedMs = Date.now() - killedAt;
    await lab.waitFor(
      '5 tasks running on h1',
      () => runningOn(tasks(), hosts).filter((h) => h === 'h1').length === 5,
      45_000,
    );
    for (const [client, target] of [
      [drained, 'h1'],
      ['h1', drained],
    ]) {
      const r = lab.inHost(lab.host(client as string), [
        'curl',
        '-s',
        '--max-time',
        '5',
        `http://${lab.host(target as string).address}:8080/`,
      ]);
      assert.equal(
        r.status,
        0,
        `${client} -> ${target}:8080 failed after the kill (LB clean after ${removedMs} ms)`,
      );
      assert.match(r.stdout, /^web /);
    }
  });

  test('meshctl diag on a worker reports its session and an LB that matches the dispatcher, and fails once the LB table is removed behind its back', () => {
    const h1 = lab.host('h1');
    const ok = lab.meshctl(['--format', 'json', 'diag'], drained);
    assert.equal(ok.status, 0, `${ok.stdout}\n${ok.stderr}`);
    const report = JSON.parse(ok.stdout) as DiagJson;
    assert.equal(report.ok, true);
    assert.equal(report.facts.node.role, 'worker');
    assert.equal(report.facts.session.connected, true);
    assert.equal(report.facts.session.manager, `${h1.address}:4242`);
    assert.equal(report.facts.loadBalancer.backend, 'nftables');
    const web = report.facts.loadBalancer.dispatched.find((d) => d.name === 'web');
    assert.equal(web?.endpoints.filter((e) => e.state === 'active').length, 5, JSON.stringify(web));
    assert.ok(report.facts.loadBalancer.virtualServices.length > 0);
    assert.ok(report.facts.overlayNetworks.some((n) => n.peers.includes(h1.address)));
    assert.equal(report.checks.find((c) => c.check === 'certificate')?.status, 'ok');

    // Remove meshd's nftables table from the worker's network namespaces. meshd's
    // 30 s resync, or any LB change reaching the worker, may put it back before
    // diag reads it: then remove it again (a bounded number of times).
    const prefix = `${lab.host(drained).netnsPrefix}n`;
    let broken = { status: 0 as number | null, stdout: '', stderr: '' };
    for (let attempt = 0; attempt < 5 && broken.status !== 1; attempt++) {
      for (const ns of lab.namespacesOf(drained).filter((n) => n.startsWith(prefix)))
        spawnSync('ip', ['netns', 'exec', ns, 'nft', 'delete', 'table', 'ip', 'meshd']);
      broken = lab.meshctl(['diag'], drained);
    }
    assert.equal(broken.status, 1, broken.stdout);
    assert.match(broken.stdout, /^FAIL\s+lb \S+\s+missing in the kernel/m);
    assert.equal(broken.stderr.trim().split('\n').length, 1, broken.stderr);
    assert.match(broken.stderr, /^meshctl: \d+ check\(s\) failed \(lb /);
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
