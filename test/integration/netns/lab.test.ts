import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createNetns, listNetns, netnsExists } from '../../../dataplane/netns/netns.js';
import { describeLab, labDown, labNetnsNames, labUp } from '../../../scripts/lab/lab.js';

const execFileAsync = promisify(execFile);
const PREFIX = 'mdklab';

after(async () => {
  await labDown(PREFIX);
});

test('describeLab names hosts and addresses without touching the kernel', () => {
  const lab = describeLab({ prefix: PREFIX, hosts: 3 });
  assert.deepEqual(
    lab.hosts.map((h) => [h.netns, h.address, h.netnsPrefix]),
    [
      ['mdklabh1', '10.99.0.11', 'mdklabh1-'],
      ['mdklabh2', '10.99.0.12', 'mdklabh2-'],
      ['mdklabh3', '10.99.0.13', 'mdklabh3-'],
    ],
  );
  assert.throws(() => describeLab({ prefix: PREFIX, hosts: 0 }), /--hosts must be an integer 1\.\.32, got 0/);
  assert.throws(() => describeLab({ prefix: 'Bad!', hosts: 1 }), /--prefix must match/);
});

test('labNetnsNames keeps only the lab, its hosts and host children of that prefix', () => {
  const names = [
    'mdklablab',
    'mdklabh1',
    'mdklabh12-net',
    'mdklabhx',
    'mdklab2h1',
    'other',
    'mdklabh1-t-abc',
  ];
  assert.deepEqual(labNetnsNames('mdklab', names), [
    'mdklablab',
    'mdklabh1',
    'mdklabh12-net',
    'mdklabh1-t-abc',
  ]);
});

test('three hosts reach each other over the underlay bridge, and up twice is idempotent', async () => {
  await labUp({ prefix: PREFIX, hosts: 3 });
  const lab = await labUp({ prefix: PREFIX, hosts: 3 });
  for (const h of lab.hosts) assert.ok(netnsExists(h.netns), h.netns);
  const { stdout } = await execFileAsync('ip', [
    'netns',
    'exec',
    'mdklabh1',
    'ping',
    '-c1',
    '-W2',
    '10.99.0.13',
  ]);
  assert.match(stdout, /1 received/);
  const fwd = await execFileAsync('ip', [
    'netns',
    'exec',
    'mdklabh2',
    'cat',
    '/proc/sys/net/ipv4/ip_forward',
  ]);
  assert.equal(fwd.stdout.trim(), '1');
});

test('down removes the lab, its hosts and namespaces created under a host prefix', async () => {
  await labUp({ prefix: PREFIX, hosts: 2 });
  await createNetns('mdklabh2-child');
  const removed = await labDown(PREFIX);
  assert.deepEqual(removed.sort(), ['mdklabh1', 'mdklabh2', 'mdklabh2-child', 'mdklablab']);
  assert.deepEqual(listNetns(PREFIX), []);
  assert.deepEqual(await labDown(PREFIX), []);
});

test('the CLI brings a lab up (JSON description) and down, and rejects bad arguments', async () => {
  const cli = fileURLToPath(new URL('../../../scripts/lab/netns-lab.ts', import.meta.url));
  const run = (args: string[]) =>
    execFileAsync(process.execPath, ['--import', 'tsx', cli, ...args], { timeout: 30_000 });
  const up = await run(['up', '--prefix', 'mdkcli', '--hosts', '2', '--json']);
  const lab = JSON.parse(up.stdout) as { hosts: { netns: string; address: string }[] };
  assert.deepEqual(
    lab.hosts.map((h) => [h.netns, h.address]),
    [
      ['mdkclih1', '10.99.0.11'],
      ['mdkclih2', '10.99.0.12'],
    ],
  );
  const down = await run(['down', '--prefix', 'mdkcli']);
  assert.match(down.stdout, /removed 3 namespaces/);
  await assert.rejects(
    run(['up', '--prefix', 'mdkcli', '--hosts', '99']),
    /--hosts must be an integer 1\.\.32, got 99/,
  );
  assert.deepEqual(listNetns('mdkcli'), []);
});
