import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sandboxNetnsName } from '../../../dataplane/overlay/names.js';
import { desiredSandboxes, type SandboxesModel } from '../../../dataplane/sandbox/model.js';
import { planSandboxes } from '../../../dataplane/sandbox/plan.js';
import { type DesiredState, EndpointMode } from '../../../src/api/gen/meshd/v1/dataplane.js';

const HOST = 'mdkh1-';

function state(vips: string[]): DesiredState {
  return {
    version: 1,
    node: { id: 'n1', underlayAddress: '10.99.0.11', dataPathPort: 0, underlayMtu: 1500 },
    networks: [
      {
        id: 'app',
        name: 'app',
        vni: 4097,
        subnet: '10.10.0.0/24',
        gateway: '10.10.0.1',
        mtu: 0,
        lbAddress: '10.10.0.251',
        peers: [],
        ingress: false,
      },
      {
        id: 'ingress',
        name: 'ingress',
        vni: 4096,
        subnet: '10.255.0.0/16',
        gateway: '10.255.0.1',
        mtu: 1400,
        lbAddress: '10.255.0.251',
        peers: [],
        ingress: true,
      },
    ],
    sandboxes: [
      {
        taskId: 't1',
        taskName: 'web.1',
        serviceId: 'web',
        attachments: [
          { networkId: 'app', address: '10.10.0.11', mac: '02:42:0a:0a:00:0b' },
          { networkId: 'ingress', address: '10.255.0.11', mac: '02:42:0a:ff:00:0b' },
        ],
      },
    ],
    remoteEndpoints: [],
    services: vips.map((v, i) => ({
      id: `s${i}`,
      name: `s${i}`,
      vips: [{ networkId: 'app', address: v }],
      ports: [],
      endpoints: [],
      endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
      lb: undefined,
    })),
    dns: undefined,
  };
}

function clone(m: SandboxesModel): SandboxesModel {
  return { sandboxes: new Map([...m.sandboxes].map(([k, v]) => [k, structuredClone(v)])) };
}

test('a sandbox gets one interface per attachment with its network MTU, VIP routes and a default route via ingress', () => {
  const m = desiredSandboxes(state(['10.10.0.100']), HOST);
  const s = m.sandboxes.get(sandboxNetnsName(HOST, 't1'));
  assert.deepEqual(
    s?.attachments.map((a) => [a.ifname, a.address, a.prefixLength, a.mtu]),
    [
      ['eth0', '10.10.0.11', 24, 1450],
      ['eth1', '10.255.0.11', 16, 1400],
    ],
  );
  assert.deepEqual(s?.routes, [
    { dst: '10.10.0.100/32', gateway: '10.10.0.1', dev: 'eth0' },
    { dst: 'default', gateway: '10.255.0.1', dev: 'eth1' },
  ]);
  assert.equal(s?.resolvConf, 'nameserver 127.0.0.11\noptions ndots:0\n');
});

test('equal models plan nothing; a new service VIP only adds its route', () => {
  const before = desiredSandboxes(state(['10.10.0.100']), HOST);
  assert.deepEqual(planSandboxes(before, clone(before)), []);
  const after = desiredSandboxes(state(['10.10.0.100', '10.10.0.101']), HOST);
  assert.deepEqual(planSandboxes(after, clone(before)), [
    {
      type: 'set-routes',
      netns: sandboxNetnsName(HOST, 't1'),
      add: [{ dst: '10.10.0.101/32', gateway: '10.10.0.1', dev: 'eth0' }],
      remove: [],
    },
  ]);
});

test('a broken interface is replaced in place and all routes re-added; the namespace is kept', () => {
  const desired = desiredSandboxes(state(['10.10.0.100']), HOST);
  const actual = clone(desired);
  const s = [...actual.sandboxes.values()][0]!;
  s.attachments = s.attachments.filter((a) => a.ifname !== 'eth0');
  s.routes = [];
  const plan = planSandboxes(desired, actual);
  assert.deepEqual(
    plan.map((c) => c.type),
    ['replace-attachment', 'set-routes'],
  );
  assert.ok(!plan.some((c) => c.type === 'create-sandbox' || c.type === 'delete-sandbox'));
});

test('a sandbox no longer desired is deleted; a missing resolv.conf is rewritten, a downed lo brought up', () => {
  const desired = desiredSandboxes(state([]), HOST);
  const actual = clone(desired);
  [...actual.sandboxes.values()][0]!.resolvConf = '';
  [...actual.sandboxes.values()][0]!.loopbackUp = false;
  assert.deepEqual(
    planSandboxes(desired, actual).map((c) => c.type),
    ['loopback-up', 'write-resolv-conf'],
  );
  const gone = planSandboxes({ sandboxes: new Map() }, desired);
  assert.deepEqual(
    gone.map((c) => c.type),
    ['delete-sandbox'],
  );
});
