import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { DesiredState, EndpointState, Protocol } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { systemClock } from '../../../src/common/clock.js';
import { certificateFacts, type DiagInputs, diagFacts, probeManager } from '../../../src/meshd/diag.js';

const applied = DesiredState.fromPartial({
  version: 9,
  networks: [
    { id: 'net1', name: 'ingress', vni: 4096, peers: [{ nodeId: 'n2', underlayAddress: '10.0.0.2' }] },
  ],
  sandboxes: [{ taskId: 't1', serviceId: 's1' }],
  services: [
    {
      id: 's1',
      name: 'web',
      vips: [{ networkId: 'net1', address: '10.255.0.2' }],
      ports: [{ protocol: Protocol.PROTOCOL_TCP, targetPort: 80, publishedPort: 8080 }],
      endpoints: [
        { taskId: 't1', nodeId: 'n1', address: '10.255.0.5', state: EndpointState.ENDPOINT_STATE_ACTIVE },
        { taskId: 't2', nodeId: 'n2', address: '10.255.0.6', state: EndpointState.ENDPOINT_STATE_DRAINING },
      ],
    },
  ],
});

function inputs(views: DiagInputs['views']): DiagInputs {
  return {
    nowMs: 1000,
    node: { nodeId: 'n1', clusterId: 'c1', role: 'worker', hostname: 'h1' },
    raft: undefined,
    probes: [],
    session: {
      connected: { manager: '10.0.0.1:4242', sessionId: 's' },
      version: 9,
      tasks: [{ taskId: 't1', phase: 'running', pid: 7 }],
      pendingReports: 0,
      knownManagers: ['10.0.0.1:4242'],
    },
    applied,
    views,
    certificate: { notAfterUnixMs: 2000, subject: 'CN=n1', error: '' },
  };
}

test('the LB facts pair each virtual service desired vs programmed, and list what the dispatcher sent', () => {
  const backend = (address: string, weight: number) => ({ address, port: 80, weight });
  const facts = diagFacts(
    inputs([
      {
        name: 'reconciler',
        error: undefined,
        view: [
          { name: 'overlay', desired: [], programmed: [], pending: [{}] },
          {
            name: 'lb-nftables',
            desired: { services: [{ key: 'a', backends: [backend('10.255.0.5', 1)] }] },
            programmed: {
              services: [
                { key: 'a', backends: [] },
                { key: 'b', backends: [backend('10.255.0.9', 1)] },
              ],
            },
            pending: [],
          },
        ],
      },
      { name: 'dns', error: undefined, view: { attached: ['t1'] } },
    ]),
  );
  const lb = facts.loadBalancer!;
  assert.equal(lb.backend, 'nftables');
  assert.deepEqual(
    lb.virtualServices.map((v) => [v.key, v.wanted, v.inKernel, v.desired.length, v.programmed.length]),
    [
      ['a', true, true, 1, 0],
      ['b', false, true, 0, 1],
    ],
  );
  assert.deepEqual(lb.dispatched[0]?.entryPoints, ['published:tcp/8080', 'vip:10.255.0.2']);
  assert.deepEqual(
    lb.dispatched[0]?.endpoints.map((e) => e.state),
    ['active', 'draining'],
  );
  assert.deepEqual(facts.overlayNetworks[0]?.peers, ['10.0.0.2']);
  assert.equal(facts.overlayNetworks[0]?.pendingChanges, 1);
  assert.deepEqual(facts.dns?.attachedTaskIds, ['t1']);
  assert.deepEqual(facts.dns?.expectedTaskIds, ['t1']);
  assert.equal(facts.session?.connected, true);
  assert.equal(facts.session?.assignmentsVersion, 9);
});

test('without a data plane there is no LB backend, and a failed kernel read is reported, not thrown', () => {
  assert.equal(diagFacts(inputs([])).loadBalancer?.backend, '');
  const failed = diagFacts(
    inputs([{ name: 'reconciler', view: undefined, error: 'nft: permission denied' }]),
  );
  assert.equal(failed.loadBalancer?.error, 'nft: permission denied');
});

test('an unreadable certificate is a fact with its error, not an exception', () => {
  const c = certificateFacts('not a certificate');
  assert.equal(c.notAfterUnixMs, 0);
  assert.notEqual(c.error, '');
});

test('a manager probe says reachable for a listening port and gives the error for a closed one', async () => {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const up = await probeManager(`127.0.0.1:${port}`, 1000, systemClock);
    assert.equal(up.reachable, true);
  } finally {
    await new Promise((r) => server.close(r));
  }
  const down = await probeManager(`127.0.0.1:${port}`, 1000, systemClock);
  assert.equal(down.reachable, false);
  assert.match(down.error, /ECONNREFUSED/);
});
