/**
 * Issue 6 acceptance, scenarios 1-7, on a 3-host namespace lab (see mesh-lab.ts).
 * Root only; namespaces use the prefix `mdla`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { macFromIpv4, VXLAN_IF } from '../../../dataplane/overlay/names.js';
import { EndpointState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { ValidationError } from '../../../src/common/errors.js';
import {
  httpGet,
  LOCAL_HEALTH,
  LOCAL_PUBLISHED,
  MeshLab,
  sh,
  TASK_PORT,
  WEB_PUBLISHED,
  WEB_VIP,
} from './mesh-lab.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
let mesh: MeshLab;

async function tasksSeen(netns: string, url: string, requests: number): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  for (let i = 0; i < requests; i++) {
    const reply = await httpGet(netns, url);
    assert.ok(reply !== null && reply.status === 200, `request ${i} to ${url} from ${netns} failed`);
    const [task, source] = reply.body.split(' ');
    seen.set(task!, source!);
  }
  return seen;
}

describe('issue 6 acceptance (3-host namespace lab, nftables LB)', { timeout: 240_000 }, () => {
  before(async () => {
    mesh = await MeshLab.up('mdla');
    // MeshLab.up applied every host's state already: the same states again change nothing.
    assert.equal(await mesh.applyAll(), 0);
  });
  after(async () => {
    await mesh?.down();
  });

  test('1: tasks on h1 and h2 reach each other by IP across VXLAN, seen as UDP 4789 on the underlay', async () => {
    const capture = spawn(
      'ip',
      [
        'netns',
        'exec',
        mesh.host(1).netns,
        'timeout',
        '10',
        'tcpdump',
        '-n',
        '-c',
        '1',
        '-i',
        'eth0',
        'udp',
        'port',
        '4789',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await new Promise<void>((resolve) => capture.stderr.once('data', () => resolve()));
    const reply = await httpGet(mesh.sandboxNetns('t1'), `http://10.10.0.12:${TASK_PORT}/`);
    assert.equal(reply?.body, 't2 10.10.0.11');
    const back = await httpGet(mesh.sandboxNetns('t2'), `http://10.10.0.11:${TASK_PORT}/`);
    assert.equal(back?.body, 't1 10.10.0.12');
    const captured = await new Promise<string>((resolve) => {
      let out = '';
      capture.stdout.on('data', (d) => {
        out += d;
      });
      capture.once('exit', () => resolve(out));
    });
    assert.match(captured, /10\.99\.0\.1\d\.\d+ > 10\.99\.0\.1\d\.4789: VXLAN/);
  });

  test('2: from a sandbox on h3 the VIP spreads connections over every task, SNATed to the h3 LB address', async () => {
    const seen = await tasksSeen(mesh.sandboxNetns('c3'), `http://${WEB_VIP}:${TASK_PORT}/`, 50);
    assert.deepEqual([...seen.keys()].sort(), ['t1', 't2']);
    assert.deepEqual([...new Set(seen.values())], ['10.10.0.253']);
  });

  test('3: the published port answers on every host address, also on h3 which runs no task', async () => {
    for (const host of mesh.lab.hosts) {
      const seen = await tasksSeen(mesh.host(3).netns, `http://${host.address}:${WEB_PUBLISHED}/`, 4);
      assert.ok(seen.size >= 1, `no task answered on ${host.name}`);
      for (const task of seen.keys()) assert.ok(['t1', 't2'].includes(task));
    }
  });

  test('4: a draining task gets no new connections, its open one lives on; removed, it is gone everywhere', async () => {
    const client = spawn(
      'ip',
      [
        'netns',
        'exec',
        mesh.sandboxNetns('c3'),
        process.execPath,
        `${FIXTURES}line-client.mjs`,
        WEB_VIP,
        String(TASK_PORT),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    try {
      const lines = readline.createInterface({ input: client.stdout })[Symbol.asyncIterator]();
      const next = async () => String((await lines.next()).value);
      assert.equal(await next(), 'connected');
      client.stdin.write('ping\n');
      const pinned = (await next()).split(' ')[0]!;
      const other = pinned === 't1' ? 't2' : 't1';
      mesh.endpoints.web.set(pinned, EndpointState.ENDPOINT_STATE_DRAINING);
      await mesh.applyAll();
      const seen = await tasksSeen(mesh.sandboxNetns('c3'), `http://${WEB_VIP}:${TASK_PORT}/`, 20);
      assert.deepEqual([...seen.keys()], [other], 'a draining task received a new connection');
      client.stdin.write('ping\n');
      assert.equal((await next()).split(' ')[0], pinned, 'the open connection to the draining task broke');

      mesh.endpoints.web.delete(pinned);
      await mesh.applyAll();
      const pinnedAddresses = new Set([
        `10.10.0.${pinned === 't1' ? 11 : 12}`,
        `10.255.0.${pinned === 't1' ? 11 : 12}`,
      ]);
      for (const reconciler of mesh.reconcilers) {
        const lb = (await reconciler.view()).find((v) => v.name === 'lb-nftables');
        const programmed = lb?.programmed as { services: { key: string; backends: { address: string }[] }[] };
        for (const service of programmed.services)
          for (const backend of service.backends)
            assert.ok(!pinnedAddresses.has(backend.address), `${service.key} still holds ${backend.address}`);
      }
    } finally {
      client.kill('SIGTERM');
      mesh.endpoints.web.set('t1', EndpointState.ENDPOINT_STATE_ACTIVE);
      mesh.endpoints.web.set('t2', EndpointState.ENDPOINT_STATE_ACTIVE);
      await mesh.applyAll();
    }
  });

  test('5: mode=local keeps the client address; the health port says 200 on h1 and 503 on h3', async () => {
    const client = mesh.host(3);
    const reply = await httpGet(client.netns, `http://${mesh.host(1).address}:${LOCAL_PUBLISHED}/`);
    assert.equal(reply?.body, `t1 ${client.address}`);
    assert.equal(
      (await httpGet(client.netns, `http://${mesh.host(1).address}:${LOCAL_HEALTH}/`))?.status,
      200,
    );
    assert.equal((await httpGet(client.netns, `http://${client.address}:${LOCAL_HEALTH}/`))?.status, 503);
  });

  test('6: a resync restores a deleted FDB entry and nft element and counts the drift; the same state again changes nothing', async () => {
    const h1 = mesh.host(1);
    const appNetns = mesh.networkNetns(h1, 'app');
    const t2Mac = macFromIpv4('10.10.0.12');
    await sh(['bridge', '-n', appNetns, 'fdb', 'del', t2Mac, 'dev', VXLAN_IF, 'self']);
    await sh([
      'ip',
      'netns',
      'exec',
      appNetns,
      'nft',
      'delete',
      'element',
      'ip',
      'meshd',
      'vips',
      `{ ${WEB_VIP} . tcp . ${TASK_PORT} }`,
    ]);
    const reconciler = mesh.reconcilers[0]!;
    const driftBefore = reconciler.status().driftRepairsTotal;
    const result = await reconciler.resync();
    assert.deepEqual(
      result?.programmers.filter((p) => p.changes > 0).map((p) => [p.name, p.changes]),
      [
        ['overlay', 1],
        ['lb-nftables', 1],
      ],
    );
    assert.equal(reconciler.status().driftRepairsTotal, driftBefore + 2);
    assert.match(
      await sh(['bridge', '-n', appNetns, 'fdb', 'show', 'dev', VXLAN_IF]),
      new RegExp(`${t2Mac} dst 10\\.99\\.0\\.12`),
    );
    assert.match(
      await sh(['ip', 'netns', 'exec', appNetns, 'nft', 'list', 'map', 'ip', 'meshd', 'vips']),
      /10\.10\.0\.100 \. tcp \. 8080/,
    );
    const metrics = await reconciler.registry.metrics();
    assert.match(metrics, /meshd_dataplane_drift_repairs_total\{programmer="overlay"\} 1/);
    const again = await reconciler.apply(mesh.stateFor(1));
    assert.equal(again.changes, 0);
    assert.equal(again.kernelOperations, 0);
  });

  test('7: a bad desired state is rejected naming the field, and nothing is half-applied', async () => {
    const h1 = mesh.host(1);
    const snapshot = async () =>
      (await sh(['ip', 'netns', 'exec', mesh.networkNetns(h1, 'app'), 'nft', 'list', 'ruleset'])) +
      (await sh(['ip', 'netns', 'exec', h1.netns, 'nft', 'list', 'ruleset'])) +
      (await sh(['bridge', '-n', mesh.networkNetns(h1, 'app'), 'fdb', 'show', 'dev', VXLAN_IF]));
    const before = await snapshot();
    const cases: [string, (s: ReturnType<MeshLab['stateFor']>) => void, RegExp][] = [
      ['networks[1].subnet', (s) => (s.networks[1]!.subnet = '10.10.0.0/16'), /overlaps 10\.10\.0\.0\/24/],
      ['networks[1].vni', (s) => (s.networks[1]!.vni = s.networks[0]!.vni), /VNI 4097 is already used/],
      [
        'services[0].endpoints[0].address',
        (s) => (s.services[0]!.endpoints[0]!.address = '10.77.0.1'),
        /outside the subnet/,
      ],
      [
        'services[0].vips[0].networkId',
        (s) => (s.services[0]!.vips[0]!.networkId = 'nope'),
        /unknown network "nope"/,
      ],
    ];
    for (const [field, breakIt, message] of cases) {
      const state = mesh.stateFor(1);
      state.services[0]!.endpoints.pop(); // a real change that must not be applied either
      breakIt(state);
      await assert.rejects(mesh.reconcilers[0]!.apply(state), (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.equal(err.field, field);
        assert.match(err.message, message);
        return true;
      });
    }
    assert.equal(await snapshot(), before);
  });
});
