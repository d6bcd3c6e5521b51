import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { listNetns } from '../../../dataplane/netns/netns.js';
import { networkNetnsName, sandboxNetnsName } from '../../../dataplane/overlay/names.js';
import { resolvConfPath } from '../../../dataplane/sandbox/programmer.js';
import { OverlayLab } from './fixture.js';

const execFileAsync = promisify(execFile);
const PREFIX = 'mdkov';

async function inNs(netns: string, argv: string[], timeoutMs = 10_000): Promise<string> {
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', netns, ...argv], { timeout: timeoutMs });
  return stdout;
}

async function pingOk(netns: string, address: string): Promise<boolean> {
  try {
    await inNs(netns, ['ping', '-c1', '-W2', address]);
    return true;
  } catch {
    return false;
  }
}

describe('two-host overlay with sandboxes', () => {
  let ol: OverlayLab;
  let t1: string;
  let t2: string;
  let app1: string;

  before(async () => {
    ol = await OverlayLab.up(PREFIX, 2);
    ol.tasks = [
      { id: 't1', host: 1, address: '10.10.0.11' },
      { id: 't2', host: 2, address: '10.10.0.12' },
    ];
    t1 = sandboxNetnsName(ol.node(1).host.netnsPrefix, 't1');
    t2 = sandboxNetnsName(ol.node(2).host.netnsPrefix, 't2');
    app1 = networkNetnsName(ol.node(1).host.netnsPrefix, 'app');
    await ol.apply(1);
    await ol.apply(2);
  });

  after(async () => {
    await ol?.down();
  });

  test('sandboxes on two hosts reach each other over VXLAN, and the underlay carries UDP 4789', async () => {
    let tcpdump: ChildProcess | undefined;
    try {
      tcpdump = spawn(
        'ip',
        [
          'netns',
          'exec',
          ol.lab.labNetns,
          'tcpdump',
          '-l',
          '-n',
          '-c',
          '1',
          '-i',
          'br0',
          'udp',
          'dst',
          'port',
          '4789',
        ],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const captured = new Promise<string>((resolve) => {
        let out = '';
        tcpdump?.stdout?.on('data', (d: Buffer) => {
          out += d.toString();
        });
        tcpdump?.once('exit', () => resolve(out));
      });
      // tcpdump prints "listening on" to stderr once the capture is armed.
      await new Promise<void>((resolve) => {
        tcpdump?.stderr?.once('data', () => resolve());
        setTimeout(resolve, 3_000).unref();
      });
      assert.ok(await pingOk(t1, '10.10.0.12'), 't1 -> t2 ping failed');
      assert.ok(await pingOk(t2, '10.10.0.11'), 't2 -> t1 ping failed');
      const line = await Promise.race([
        captured,
        new Promise<string>((r) => setTimeout(() => r('timeout'), 5_000).unref()),
      ]);
      assert.match(line, /10\.99\.0\.1[12]\.\d+ > 10\.99\.0\.1[12]\.4789: VXLAN/);
    } finally {
      tcpdump?.kill('SIGTERM');
    }
  });

  test('MTU is the underlay MTU minus 50, the vxlan learns nothing and floods nothing', async () => {
    const link = JSON.parse(await inNs(t1, ['ip', '-j', 'link', 'show', 'eth0'])) as { mtu: number }[];
    assert.equal(link[0]?.mtu, 1450);
    const vx = JSON.parse(await inNs(app1, ['ip', '-d', '-j', 'link', 'show', 'vx0'])) as {
      mtu: number;
      linkinfo: { info_data: { id: number; port: number; learning: boolean; proxy?: boolean } };
    }[];
    assert.deepEqual(
      [
        vx[0]?.mtu,
        vx[0]?.linkinfo.info_data.id,
        vx[0]?.linkinfo.info_data.port,
        vx[0]?.linkinfo.info_data.learning,
      ],
      [1450, 4097, 4789, false],
    );
    const fdb = JSON.parse(await inNs(app1, ['bridge', '-j', 'fdb', 'show', 'dev', 'vx0'])) as {
      mac: string;
      dst?: string;
    }[];
    assert.ok(!fdb.some((e) => e.mac === '00:00:00:00:00:00'), 'no all-zero flood entry');
    assert.ok(fdb.some((e) => e.mac === '02:42:0a:0a:00:0c' && e.dst === '10.99.0.12'));
  });

  test('the vxlan UDP socket lives in the host namespace, not the network namespace', async () => {
    const host = await inNs(ol.node(1).host.netns, ['ss', '-uln']);
    assert.match(host, /:4789\b/);
    const inNetwork = await inNs(app1, ['ss', '-uln']);
    assert.doesNotMatch(inNetwork, /:4789\b/);
  });

  test('a sandbox resolves through 127.0.0.11 and routes the service VIP via its network namespace', async () => {
    assert.equal(await readFile(resolvConfPath(t1), 'utf8'), 'nameserver 127.0.0.11\noptions ndots:0\n');
    assert.match(await inNs(t1, ['cat', '/etc/resolv.conf']), /^nameserver 127\.0\.0\.11$/m);
    const routes = JSON.parse(await inNs(t1, ['ip', '-j', 'route', 'show'])) as {
      dst: string;
      gateway?: string;
    }[];
    assert.ok(routes.some((r) => r.dst === '10.10.0.100' && r.gateway === '10.10.0.1'));
    assert.ok(routes.some((r) => r.dst === 'default' && r.gateway === '10.10.0.1'));
    const lo = JSON.parse(await inNs(t1, ['ip', '-j', 'link', 'show', 'lo'])) as { flags: string[] }[];
    assert.ok(lo[0]?.flags.includes('UP'));
  });

  test('egress leaves through the host, masqueraded to the host underlay address', async () => {
    const server = spawn(
      'ip',
      [
        'netns',
        'exec',
        ol.node(2).host.netns,
        process.execPath,
        '-e',
        "require('net').createServer(c=>c.end(c.remoteAddress)).listen(7070,'10.99.0.12',()=>console.log('up'))",
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve) => server.stdout?.once('data', () => resolve()));
      const seen = await inNs(t1, [
        process.execPath,
        '-e',
        "const c=require('net').connect(7070,'10.99.0.12');let d='';c.on('data',x=>d+=x);c.on('end',()=>process.stdout.write(d))",
      ]);
      assert.equal(seen, '10.99.0.11');
    } finally {
      server.kill('SIGTERM');
    }
  });

  test('applying the same state again changes nothing', async () => {
    assert.equal(await ol.apply(1), 0);
    assert.equal(await ol.apply(2), 0);
  });

  test('a hand-deleted FDB entry and neighbour are restored by the next resync, which counts the drift', async () => {
    await inNs(app1, [
      'bridge',
      'fdb',
      'del',
      '02:42:0a:0a:00:0c',
      'dev',
      'vx0',
      'dst',
      '10.99.0.12',
      'self',
    ]);
    await inNs(app1, ['ip', 'neigh', 'del', '10.10.0.252', 'dev', 'vx0']);
    const n = ol.node(1);
    const plan = n.overlay.plan(n.overlay.desired(ol.stateFor(1)), await n.overlay.dump());
    assert.deepEqual(plan.map((c) => c.type).sort(), ['set-entry', 'set-entry']);
    const before = n.reconciler.status().driftRepairsTotal;
    assert.equal(await ol.resync(1), 2);
    assert.equal(n.reconciler.status().driftRepairsTotal, before + 2);
    assert.equal(await ol.resync(1), 0);
    assert.ok(await pingOk(t1, '10.10.0.12'));
  });

  test('a hand-deleted sandbox interface and a downed lo are repaired in place by a resync', async () => {
    await inNs(t1, ['ip', 'link', 'del', 'eth0']);
    await inNs(t1, ['ip', 'link', 'set', 'lo', 'down']);
    assert.ok((await ol.resync(1)) > 0);
    assert.ok(await pingOk(t1, '10.10.0.12'));
    assert.ok(await pingOk(t1, '127.0.0.1'));
    assert.equal(await ol.resync(1), 0);
  });

  test('a hand-deleted vxlan device rebuilds the network, and the next resync re-attaches its sandboxes', async () => {
    await inNs(app1, ['ip', 'link', 'del', 'vx0']);
    assert.ok((await ol.resync(1)) > 0);
    await ol.resync(1);
    assert.ok(await pingOk(t1, '10.10.0.12'));
    assert.equal(await ol.resync(1), 0);
  });

  test('removing the task and the network deletes their namespaces and host link', async () => {
    ol.tasks = ol.tasks.filter((t) => t.id !== 't1');
    await ol.apply(1);
    assert.ok(!listNetns(PREFIX).includes(t1));
    await ol.apply(1, ol.stateFor(1, { withNetwork: false }));
    assert.ok(!listNetns(PREFIX).includes(app1));
    const links = JSON.parse(await inNs(ol.node(1).host.netns, ['ip', '-j', 'link', 'show'])) as {
      ifname: string;
    }[];
    assert.deepEqual(
      links.map((l) => l.ifname).filter((n) => n.startsWith('mh') || n.startsWith('vx')),
      [],
    );
    assert.equal(await ol.resync(1), 0);
  });
});
