import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DiagnoseResponse } from '../../../src/api/gen/meshd/v1/diag.js';
import { backendDifferences, judgeDiagnosis } from '../../../src/meshctl/diag.js';

const NOW = Date.UTC(2026, 10, 22);
const DAY = 24 * 3600 * 1000;

/** A worker whose every fact is healthy; each test breaks one thing. */
function healthy(): DiagnoseResponse {
  return DiagnoseResponse.fromPartial({
    nowUnixMs: NOW,
    node: { nodeId: 'n1', clusterId: 'c1', role: 'worker', hostname: 'h2' },
    managers: { probes: [{ address: '10.0.0.1:4242', reachable: true, connectMs: 1 }] },
    session: {
      connected: true,
      manager: '10.0.0.1:4242',
      sessionId: 's1',
      hasAssignments: true,
      assignmentsVersion: 7,
      tasks: [{ taskId: 't1', phase: 'running', pid: 42 }],
    },
    loadBalancer: {
      backend: 'nftables',
      dispatched: [
        {
          serviceId: 'web',
          name: 'web',
          endpoints: [{ taskId: 't1', nodeId: 'n1', address: '10.255.0.5', state: 'active' }],
          entryPoints: ['published:tcp/8080'],
        },
      ],
      virtualServices: [
        {
          key: 'host/tcp/*:8080',
          desired: [{ address: '10.255.0.5', port: 80, weight: 1 }],
          programmed: [{ address: '10.255.0.5', port: 80, weight: 1 }],
          wanted: true,
          inKernel: true,
        },
      ],
    },
    overlayNetworks: [{ networkId: 'ingress', name: 'ingress', vni: 4096, peers: ['10.0.0.1'] }],
    dns: { expectedTaskIds: ['t1'], attachedTaskIds: ['t1'], serviceNames: 1 },
    certificate: { notAfterUnixMs: NOW + 90 * DAY, subject: 'CN=n1' },
  });
}

const failed = (facts: DiagnoseResponse) =>
  judgeDiagnosis(facts)
    .filter((c) => c.status === 'fail')
    .map((c) => c.check);

test('a healthy node passes every check', () => {
  assert.deepEqual(failed(healthy()), []);
});

test('an unreachable manager, a closed session and a manager without a Raft leader each fail', () => {
  const f = healthy();
  f.managers!.probes.push({
    address: '10.0.0.3:4242',
    reachable: false,
    error: 'ECONNREFUSED',
    connectMs: 0,
  });
  f.session!.connected = false;
  assert.deepEqual(failed(f), ['manager 10.0.0.3:4242', 'session']);
  const m = healthy();
  m.node!.role = 'manager';
  assert.deepEqual(failed(m), ['raft']);
  m.managers!.raftLeaderNodeId = 'n1';
  m.managers!.thisNodeLeads = true;
  assert.deepEqual(failed(m), []);
});

test('a service without an active endpoint fails: its port cannot answer', () => {
  const f = healthy();
  f.loadBalancer!.dispatched[0]!.endpoints[0]!.state = 'draining';
  const check = judgeDiagnosis(f).find((c) => c.check === 'service web');
  assert.equal(check?.status, 'fail');
  assert.match(check?.detail ?? '', /0 active, 1 draining.*nothing can answer/);
});

test('the kernel LB differing from what the dispatcher sent is flagged per virtual service', () => {
  const f = healthy();
  f.loadBalancer!.virtualServices[0]!.programmed = [
    { address: '10.255.0.5', port: 80, weight: 0 },
    { address: '10.255.0.9', port: 80, weight: 1 },
  ];
  assert.deepEqual(failed(f), ['lb host/tcp/*:8080', 'load balancer']);
  assert.deepEqual(backendDifferences(f.loadBalancer!.virtualServices[0]!), [
    'kernel still sends to 10.255.0.9:80',
    '10.255.0.5:80 weight 0 (should be 1)',
  ]);
});

test('a virtual service missing from the kernel, or left there stale, is a difference', () => {
  const vs = healthy().loadBalancer!.virtualServices[0]!;
  assert.match(
    backendDifferences({ ...vs, inKernel: false, programmed: [] }).join(),
    /missing in the kernel/,
  );
  assert.match(backendDifferences({ ...vs, wanted: false, desired: [] }).join(), /stale/);
  assert.deepEqual(backendDifferences(vs), []);
});

test('overlay drift and a sandbox without DNS fail', () => {
  const f = healthy();
  f.overlayNetworks[0]!.pendingChanges = 2;
  f.dns!.attachedTaskIds = [];
  assert.deepEqual(failed(f), ['overlay', 'dns']);
});

test('an expired certificate fails, one expiring within a day warns', () => {
  const f = healthy();
  f.certificate!.notAfterUnixMs = NOW - 1;
  assert.deepEqual(failed(f), ['certificate']);
  f.certificate!.notAfterUnixMs = NOW + 3600_000;
  const check = judgeDiagnosis(f).find((c) => c.check === 'certificate');
  assert.equal(check?.status, 'warn');
  assert.match(check?.detail ?? '', /expires in 60 minutes/);
});

test('a node without a data plane warns once and skips the LB, overlay and DNS checks', () => {
  const f = healthy();
  f.loadBalancer!.backend = '';
  f.dns!.attachedTaskIds = [];
  const checks = judgeDiagnosis(f);
  assert.deepEqual(failed(f), []);
  assert.equal(checks.find((c) => c.check === 'data plane')?.status, 'warn');
  assert.equal(
    checks.some((c) => c.check === 'dns' || c.check.startsWith('service ')),
    false,
  );
});
