import assert from 'node:assert/strict';
import { test } from 'node:test';
import { localHostAccess } from '../../../dataplane/netns/host.js';
import { NetnsHelperPool } from '../../../dataplane/netns/pool.js';
import { desiredOverlay, emptyOverlayModel, type OverlayModel } from '../../../dataplane/overlay/model.js';
import {
  macFromIpv4,
  networkNetnsName,
  sandboxVethName,
  validateHostPrefix,
} from '../../../dataplane/overlay/names.js';
import { planOverlay } from '../../../dataplane/overlay/plan.js';
import { overlayProgrammer } from '../../../dataplane/overlay/programmer.js';
import { type DesiredState, EndpointMode } from '../../../src/api/gen/meshd/v1/dataplane.js';

const HOST = 'mdkh1-';

function state(overrides: Partial<DesiredState> = {}): DesiredState {
  return {
    version: 1,
    node: { id: 'n1', underlayAddress: '10.99.0.11', dataPathPort: 0, underlayMtu: 0 },
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
    ],
    sandboxes: [],
    remoteEndpoints: [
      { networkId: 'app', address: '10.10.0.12', mac: '02:42:0a:0a:00:0c', vtep: '10.99.0.12', taskId: 't2' },
    ],
    services: [
      {
        id: 's',
        name: 's',
        vips: [],
        ports: [],
        endpoints: [],
        endpointMode: EndpointMode.ENDPOINT_MODE_VIP,
        lb: undefined,
      },
    ],
    dns: undefined,
    ...overrides,
  };
}

function clone(m: OverlayModel): OverlayModel {
  return {
    networks: new Map([...m.networks].map(([k, v]) => [k, { ...v, addresses: [...v.addresses] }])),
    entries: new Map([...m.entries].map(([k, v]) => [k, { ...v }])),
    egressSubnets: [...m.egressSubnets],
  };
}

test('defaults: VXLAN port 4789, MTU = underlay 1500 - 50, bridge MAC from the LB address', () => {
  const m = desiredOverlay(state(), { hostPrefix: HOST });
  const n = m.networks.get(networkNetnsName(HOST, 'app'));
  assert.deepEqual(
    [n?.port, n?.mtu, n?.bridgeMac, n?.addresses, n?.local],
    [4789, 1450, '02:42:0a:0a:00:fb', ['10.10.0.1/24', '10.10.0.251/24'], '10.99.0.11'],
  );
  const custom = desiredOverlay(
    state({ node: { id: 'n1', underlayAddress: '10.99.0.11', dataPathPort: 4790, underlayMtu: 9000 } }),
    { hostPrefix: HOST },
  );
  const c = [...custom.networks.values()][0];
  assert.deepEqual([c?.port, c?.mtu], [4790, 8950]);
});

test('from nothing: create the network, then one entry per remote endpoint, then egress', () => {
  const desired = desiredOverlay(state(), { hostPrefix: HOST });
  assert.deepEqual(
    planOverlay(desired, emptyOverlayModel()).map((c) => c.type),
    ['create-network', 'set-entry', 'set-egress'],
  );
});

test('equal models plan no change', () => {
  const desired = desiredOverlay(state(), { hostPrefix: HOST });
  assert.deepEqual(planOverlay(desired, clone(desired)), []);
});

test('a missing or moved FDB entry is set again, a stale one deleted, and nothing else touched', () => {
  const desired = desiredOverlay(state(), { hostPrefix: HOST });
  const actual = clone(desired);
  const [key, entry] = [...actual.entries][0]!;
  actual.entries.set(key, { ...entry, vtep: '' });
  const ns = networkNetnsName(HOST, 'app');
  actual.entries.set(`${ns}|10.10.0.99`, {
    netns: ns,
    address: '10.10.0.99',
    mac: '02:42:0a:0a:00:63',
    vtep: '10.99.0.13',
  });
  assert.deepEqual(
    planOverlay(desired, actual).map((c) => [
      c.type,
      c.type === 'set-entry' || c.type === 'delete-entry' ? c.entry.address : '',
    ]),
    [
      ['set-entry', '10.10.0.12'],
      ['delete-entry', '10.10.0.99'],
    ],
  );
});

test('a changed network (VNI, MTU) is rebuilt and its entries re-added', () => {
  const desired = desiredOverlay(state(), { hostPrefix: HOST });
  const actual = clone(desired);
  const n = [...actual.networks.values()][0]!;
  n.mtu = 1400;
  assert.deepEqual(
    planOverlay(desired, actual).map((c) => c.type),
    ['delete-network', 'create-network', 'set-entry'],
  );
});

test("a node's LB address arriving after its network changes the bridge in place, never rebuilding the namespace", () => {
  const before = state();
  const network = before.networks[0]!;
  const withoutLb = desiredOverlay(state({ networks: [{ ...network, lbAddress: '' }] }), {
    hostPrefix: HOST,
  });
  const withLb = desiredOverlay(before, { hostPrefix: HOST });
  const changes = planOverlay(withLb, withoutLb);
  assert.deepEqual(
    changes.map((c) => c.type),
    ['set-bridge'],
  );
  const c = changes[0];
  assert.ok(c?.type === 'set-bridge');
  assert.deepEqual(c.addAddresses, ['10.10.0.251/24']);
  assert.deepEqual(c.removeAddresses, []);
  assert.equal(c.network.bridgeMac, macFromIpv4('10.10.0.251'));
});

test('a network no longer desired is deleted without deleting its entries one by one', () => {
  const actual = desiredOverlay(state(), { hostPrefix: HOST });
  const desired = desiredOverlay(state({ networks: [], remoteEndpoints: [] }), { hostPrefix: HOST });
  assert.deepEqual(
    planOverlay(desired, actual).map((c) => c.type),
    ['delete-network', 'set-egress'],
  );
});

test('names: long IDs are hashed to fit, link names stay within IFNAMSIZ, MACs derive from addresses', () => {
  const long = networkNetnsName(HOST, 'x'.repeat(25));
  assert.ok(long.length <= 40);
  assert.notEqual(networkNetnsName(HOST, 'a'.repeat(25)), networkNetnsName(HOST, `${'a'.repeat(24)}b`));
  assert.ok(sandboxVethName('t'.repeat(25), 3).length <= 15);
  assert.equal(macFromIpv4('10.255.0.1'), '02:42:0a:ff:00:01');
});

test('a programmer refuses an empty host prefix: it would adopt and delete other software namespaces', () => {
  assert.throws(
    () => overlayProgrammer({ hostPrefix: '', host: localHostAccess(), helpers: new NetnsHelperPool() }),
    /hostPrefix: namespace prefix must match .* got ""/,
  );
  assert.equal(validateHostPrefix('md-'), 'md-');
  assert.equal(validateHostPrefix('mdkh1-'), 'mdkh1-');
  assert.throws(() => validateHostPrefix('md'), /must match/);
});
