import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IpvsServiceOptions } from '../../dataplane/lb/ipvs/translate.js';
import {
  ANY_LOCAL_ADDRESS,
  type LbScope,
  type LbVirtualService,
  virtualServiceKey,
} from '../../dataplane/lb/types.js';
import { labName, VmLab } from '../../scripts/vmlab/lab.js';
import type { GuestStep } from './guest/driver.js';
import { bundleProgram, ok, phase, runGuestSteps } from './helpers.js';
import { parseIpvsadmList, parseTimeouts } from './ipvsadm.js';

// Three VMs: vm1 is the director (the IPVS backend runs there) and hosts one
// task, vm2 hosts the other task, vm3 is the client reaching the VIP through vm1.
const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const PEER = join(ROOT, 'test/vm/guest/tcp-peer.mjs');
const VIP = '10.96.0.10';
const scope: LbScope = { kind: 'network', networkId: 'n1' };
const KEY = virtualServiceKey(scope, 'tcp', VIP, 80);
let lab: VmLab;
let dir: string;

before(async () => {
  lab = await VmLab.up(3, { name: labName('mdvlb') });
  phase('lab up');
  dir = join(ROOT, '.state', `mdvlb-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const serve = (vm: string, address: string) =>
    lab.run(
      vm,
      `(node ${PEER} serve ${address} 8080 ${vm} > /dev/null 2>&1 &)
       for i in $(seq 100); do ss -ltn | grep -q ${address}:8080 && exit 0; sleep 0.2; done; exit 1`,
    );
  await Promise.all([
    serve('vm1', '10.77.0.11'),
    serve('vm2', '10.77.0.12'),
    lab.run('vm3', `ip route replace 10.96.0.0/24 via 10.77.0.11`),
  ]);
  phase('peers listening');
});

after(async () => {
  await lab?.down();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function service(vm2Weight: number): LbVirtualService {
  return {
    key: KEY,
    scope,
    protocol: 'tcp',
    address: VIP,
    port: 80,
    scheduler: 'random',
    snatAddress: '10.77.0.11',
    backends: [
      { address: '10.77.0.11', port: 8080, weight: 1 },
      { address: '10.77.0.12', port: 8080, weight: vm2Weight },
    ],
  };
}

const options: Record<string, IpvsServiceOptions> = {
  [KEY]: { scheduler: 'rr', tcpTimeoutS: 7200, tcpFinTimeoutS: 0, udpTimeoutS: 0, drainTimeoutMs: 120_000 },
};

async function waitForHostFile(path: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`${path} did not appear within ${timeoutMs} ms`);
    await sleep(100);
  }
}

it('drain: weight 0 in ipvsadm -Ln keeps open connections, ActiveConn falls, the entry is then removed; timeouts reach the kernel; ipvsadm -C is repaired by the next sync', async () => {
  const sync = (vm2Weight: number): GuestStep => ({
    step: 'lbSync',
    services: [service(vm2Weight)],
    options,
  });
  const list: GuestStep = { step: 'sh', cmd: 'ipvsadm -Ln' };
  const steps: GuestStep[] = [
    sync(1), // 0
    { step: 'writeFile', path: join(dir, 'synced'), text: '' },
    { step: 'waitFile', path: join(dir, 'held.json'), timeoutMs: 90_000 },
    list, // 3: both tasks hold connections
    sync(0), // 4: vm2's task starts draining
    list, // 5
    sync(0), // 6: still has active connections: kept
    { step: 'writeFile', path: join(dir, 'release'), text: '' },
    { step: 'waitFile', path: join(dir, 'after.json'), timeoutMs: 90_000 },
    list, // 9: ActiveConn of the draining task fell to 0
    sync(0), // 10: swept
    list, // 11
    { step: 'sh', cmd: 'ipvsadm -L --timeout' }, // 12
    { step: 'sh', cmd: 'ipvsadm -C' }, // 13
    sync(0), // 14: drift repair
    list, // 15
  ];
  const director = runGuestSteps(lab, 'vm1', steps);
  await waitForHostFile(join(dir, 'synced'), 120_000);
  const client = lab.run('vm3', `node ${PEER} hold ${VIP} 80 4 ${dir}`, { timeoutMs: 180_000 });
  const [results] = await Promise.all([director, client]);

  const sh = (i: number) => parseIpvsadmList(ok<{ stdout: string }>(results[i], `step ${i}`).stdout);
  const dest = (i: number, address: string) =>
    sh(i)
      .find((s) => s.key === `tcp ${VIP}:80`)
      ?.destinations.find((d) => d.address === address);
  const held = (await import('node:fs')).readFileSync(join(dir, 'held.json'), 'utf8');
  const afterDrain = (await import('node:fs')).readFileSync(join(dir, 'after.json'), 'utf8');

  // rr over two tasks; vm2 sees the director's address (SNAT), not the client's.
  const heldAnswers = JSON.parse(held) as string[];
  assert.deepEqual(heldAnswers.map((a) => a.split(' ')[0]).sort(), ['vm1', 'vm1', 'vm2', 'vm2'], held);
  assert.ok(
    heldAnswers.filter((a) => a.startsWith('vm2')).every((a) => a.endsWith(' 10.77.0.11')),
    held,
  );
  assert.deepEqual(dest(3, '10.77.0.12:8080')?.numbers.slice(0, 2), [1, 2]);

  // Draining: weight 0, its two connections still active, not removed while they live.
  assert.deepEqual(dest(5, '10.77.0.12:8080')?.numbers.slice(0, 2), [0, 2]);
  assert.equal(ok<{ drained: number }>(results[6], 'sync 6').drained, 0);
  // New connections all go to the active task.
  // (A task on the director itself is reached without SNAT: local delivery skips postrouting.)
  const afterAnswers = JSON.parse(afterDrain) as string[];
  assert.deepEqual(
    afterAnswers.map((a) => a.split(' ')[0]),
    ['vm1', 'vm1', 'vm1', 'vm1'],
    afterDrain,
  );
  assert.equal(dest(9, '10.77.0.12:8080')?.numbers[1], 0, 'ActiveConn fell to 0');
  assert.equal(ok<{ drained: number }>(results[10], 'sync 10').drained, 1);
  assert.equal(dest(11, '10.77.0.12:8080'), undefined, 'drained entry removed');
  assert.ok(dest(11, '10.77.0.11:8080'));

  // The service's tcp timeout is the namespace's IPVS tcp timeout.
  assert.equal(parseTimeouts(ok<{ stdout: string }>(results[12], 'timeouts').stdout).tcpS, 7200);

  // ipvsadm -C by hand: the next sync puts the service back.
  assert.deepEqual(ok<{ changes: string[] }>(results[14], 'repair').changes, [`add-service ${KEY}`]);
  assert.deepEqual(dest(15, '10.77.0.11:8080')?.numbers.slice(0, 1), [1]);
});

it('a published port answers on the node address through a fwmark service, and removing a UDP endpoint flushes its conntrack entries', async () => {
  const host: LbScope = { kind: 'host' };
  const published: LbVirtualService = {
    key: virtualServiceKey(host, 'tcp', ANY_LOCAL_ADDRESS, 30080),
    scope: host,
    protocol: 'tcp',
    address: ANY_LOCAL_ADDRESS,
    port: 30080,
    scheduler: 'random',
    snatAddress: '10.77.0.11',
    backends: [{ address: '10.77.0.12', port: 8080, weight: 1 }],
  };
  const dns = (backends: LbVirtualService['backends']): LbVirtualService => ({
    key: virtualServiceKey(scope, 'udp', '10.96.0.20', 8080),
    scope,
    protocol: 'udp',
    address: '10.96.0.20',
    port: 8080,
    scheduler: 'random',
    snatAddress: '10.77.0.11',
    backends,
  });
  const countUdp = {
    step: 'sh',
    cmd: 'conntrack -L -p udp --reply-src 10.77.0.12 2>/dev/null | wc -l',
  } as const;
  const steps: GuestStep[] = [
    {
      step: 'lbSync',
      services: [published, dns([{ address: '10.77.0.12', port: 8080, weight: 1 }])],
      options: {},
    },
    { step: 'writeFile', path: join(dir, 'synced2'), text: '' },
    { step: 'waitFile', path: join(dir, 'clients-done'), timeoutMs: 90_000 },
    countUdp, // 3
    { step: 'lbSync', services: [published, dns([])], options: {} }, // 4
    countUdp, // 5
    { step: 'sh', cmd: 'ipvsadm -Ln' }, // 6
  ];
  const director = runGuestSteps(lab, 'vm1', steps);
  await waitForHostFile(join(dir, 'synced2'), 120_000);
  // `head`, not bash's `read`: read(2)s one byte at a time, which on a datagram socket eats the datagram.
  const client = await lab.exec(
    'vm3',
    `exec 3<>/dev/tcp/10.77.0.11/30080 && read -t 5 tcp <&3; exec 3<&-
     exec 4<>/dev/udp/10.96.0.20/8080 && echo ping >&4 && udp=$(timeout 5 head -n1 <&4); exec 4<&-
     echo "tcp=$tcp"; echo "udp=$udp"; touch ${dir}/clients-done`,
  );
  const results = await director;
  assert.match(client.stdout, /^tcp=vm2 10\.77\.0\.11$/m, client.stdout + client.stderr);
  assert.match(client.stdout, /^udp=vm2 10\.77\.0\.11$/m, client.stdout + client.stderr);
  const count = (i: number) => Number(ok<{ stdout: string }>(results[i], `step ${i}`).stdout.trim());
  assert.ok(count(3) >= 1, 'the UDP flow is in conntrack before the endpoint goes');
  assert.equal(count(5), 0, 'removing the endpoint flushed its UDP conntrack entries');
  const listing = parseIpvsadmList(ok<{ stdout: string }>(results[6], 'list').stdout);
  assert.ok(
    listing.some((s) => s.key.startsWith('fwmark ') && s.destinations[0]?.address === '10.77.0.12:8080'),
  );
});

it('a network scope in its own namespace is programmed there through the IPVS helper, and reads back without changes', async () => {
  const helper = await bundleProgram(join(ROOT, 'dataplane/lb/ipvs/helper-main.ts'), 'ipvs-helper');
  await lab.run('vm1', 'ip netns delete mdvn1 2>/dev/null; ip netns add mdvn1 && ip -n mdvn1 link set lo up');
  try {
    const svc: LbVirtualService = {
      key: virtualServiceKey(scope, 'tcp', '10.96.1.10', 80),
      scope,
      protocol: 'tcp',
      address: '10.96.1.10',
      port: 80,
      scheduler: 'random',
      snatAddress: null,
      backends: [{ address: '10.77.0.12', port: 8080, weight: 1 }],
    };
    const sync: GuestStep = {
      step: 'lbSync',
      services: [svc],
      options: {},
      netns: 'mdvn1',
      helperCommand: ['node', helper],
    };
    const results = await runGuestSteps(lab, 'vm1', [
      sync,
      { step: 'sh', cmd: 'ip netns exec mdvn1 ipvsadm -Ln' },
      { step: 'sh', cmd: 'ipvsadm -Ln' },
      sync,
      { step: 'sh', cmd: 'ip netns exec mdvn1 sysctl -n net.ipv4.vs.conntrack' },
    ]);
    assert.deepEqual(ok<{ changes: string[] }>(results[0], 'first sync').changes, [`add-service ${svc.key}`]);
    const inNs = parseIpvsadmList(ok<{ stdout: string }>(results[1], 'netns list').stdout);
    assert.deepEqual(
      inNs.map((p) => [p.key, p.destinations.map((d) => d.address)]),
      [['tcp 10.96.1.10:80', ['10.77.0.12:8080']]],
    );
    const inRoot = parseIpvsadmList(ok<{ stdout: string }>(results[2], 'root list').stdout);
    assert.ok(
      !inRoot.some((p) => p.key === 'tcp 10.96.1.10:80'),
      'nothing leaked into the VM root namespace',
    );
    assert.deepEqual(ok<{ changes: string[] }>(results[3], 'second sync').changes, []);
    assert.equal(ok<{ stdout: string }>(results[4], 'sysctl').stdout.trim(), '1');
  } finally {
    await lab.run('vm1', 'ip netns delete mdvn1');
  }
});
