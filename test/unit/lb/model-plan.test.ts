import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { desiredLbState } from '../../../dataplane/lb/model.js';
import { parseScopeDump } from '../../../dataplane/lb/nft/parse.js';
import {
  keysOf,
  parseSelectorChainName,
  renderServiceElements,
  selectorChainName,
  selectorOf,
} from '../../../dataplane/lb/nft/render.js';
import { planLbChanges } from '../../../dataplane/lb/plan.js';
import { emptyLbState } from '../../../dataplane/lb/types.js';
import { EndpointState, PublishMode } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { endpoint, sampleState } from '../desired/fixtures.js';

describe('LB model from desired state', () => {
  test('a VIP balances over the endpoints of its own network with SNAT to the node LB address', () => {
    const lb = desiredLbState(sampleState());
    const vip = lb.services.get('net:app/tcp/10.10.0.100:8080');
    assert.ok(vip);
    assert.equal(vip.snatAddress, '10.10.0.251');
    assert.deepEqual(
      vip.backends.map((b) => `${b.address}:${b.port}/${b.weight}`),
      ['10.10.0.11:8080/1', '10.10.0.12:8080/1'],
    );
  });

  test('an ingress published port steers every host address to the ingress LB, balanced cluster-wide there', () => {
    const lb = desiredLbState(sampleState());
    const host = lb.services.get('host/tcp/*:30080');
    assert.deepEqual(host?.backends, [{ address: '10.255.0.251', port: 30080, weight: 1 }]);
    assert.equal(host?.snatAddress, null);
    const ingress = lb.services.get('net:ingress/tcp/10.255.0.251:30080');
    assert.deepEqual(
      ingress?.backends.map((b) => b.address),
      ['10.255.0.11', '10.255.0.12'],
    );
  });

  test('a draining endpoint has weight 0', () => {
    const state = sampleState();
    state.services[0]!.endpoints[1]!.state = EndpointState.ENDPOINT_STATE_DRAINING;
    const vip = desiredLbState(state).services.get('net:app/tcp/10.10.0.100:8080');
    assert.deepEqual(
      vip?.backends.map((b) => b.weight),
      [1, 0],
    );
  });

  test('mode=local publishes only local endpoints without SNAT, with a health port that reflects them', () => {
    const state = sampleState();
    const port = state.services[0]!.ports[0]!;
    port.publishMode = PublishMode.PUBLISH_MODE_LOCAL;
    port.healthPort = 30081;
    const lb = desiredLbState(state);
    const host = lb.services.get('host/tcp/*:30080');
    assert.deepEqual(host?.backends, [{ address: '10.255.0.11', port: 8080, weight: 1 }]);
    assert.equal(host?.snatAddress, null);
    assert.deepEqual(lb.healthPorts.get(30081), { port: 30081, serviceId: 'web', healthy: true });
    state.node!.id = 'n3';
    assert.equal(desiredLbState(state).healthPorts.get(30081)?.healthy, false);
  });
});

describe('LB planning', () => {
  test('equal states plan zero changes', () => {
    assert.deepEqual(planLbChanges(desiredLbState(sampleState()), desiredLbState(sampleState())), []);
  });

  test('one endpoint change plans one update of exactly the services that use it', () => {
    const before = sampleState();
    const after = sampleState();
    after.services[0]!.endpoints.push(endpoint('t3', 'n2', 'app', '10.10.0.13'));
    const changes = planLbChanges(desiredLbState(after), desiredLbState(before));
    assert.deepEqual(
      changes.map((c) => `${c.type} ${c.service.key}`),
      ['update-service net:app/tcp/10.10.0.100:8080'],
    );
  });

  test('removals come before additions, and a missing service is added', () => {
    const desired = desiredLbState(sampleState());
    const changes = planLbChanges(emptyLbState(), desired);
    assert.ok(changes.every((c) => c.type === 'remove-service'));
    assert.equal(planLbChanges(desired, emptyLbState()).length, desired.services.size);
  });
});

describe('nft rendering and dump decoding', () => {
  const vip = () => desiredLbState(sampleState()).services.get('net:app/tcp/10.10.0.100:8080')!;

  test('a weight-w backend holds w slots, draining backends are kept apart, the verdict names the shared selector', () => {
    const service = vip();
    service.backends = [
      { address: '10.10.0.11', port: 8080, weight: 2 },
      { address: '10.10.0.12', port: 8080, weight: 0 },
    ];
    const { deletes, adds } = renderServiceElements(
      keysOf(service),
      { footprint: { slotIndexes: [], draining: [] }, hasVerdict: false },
      service,
    );
    assert.deepEqual(deletes, []);
    assert.deepEqual(adds, [
      'ip meshd vip_slots_tcp { 10.10.0.100 . tcp . 8080 . 0 : 10.10.0.11 . 8080, 10.10.0.100 . tcp . 8080 . 1 : 10.10.0.11 . 8080 }',
      'ip meshd draining { 10.10.0.100 . tcp . 8080 . 10.10.0.12 . 8080 }',
      'ip meshd vips { 10.10.0.100 . tcp . 8080 : goto sel_tcp_r_s_2 }',
    ]);
  });

  test('an update deletes exactly the elements the kernel holds before writing the new ones', () => {
    const service = vip();
    const { deletes } = renderServiceElements(
      keysOf(service),
      { footprint: { slotIndexes: [0, 3], draining: ['10.10.0.9 . 8080'] }, hasVerdict: true },
      service,
    );
    assert.deepEqual(deletes, [
      'ip meshd vips { 10.10.0.100 . tcp . 8080 }',
      'ip meshd vip_slots_tcp { 10.10.0.100 . tcp . 8080 . 0, 10.10.0.100 . tcp . 8080 . 3 }',
      'ip meshd draining { 10.10.0.100 . tcp . 8080 . 10.10.0.9 . 8080 }',
    ]);
  });

  test('a service with no active backend jumps to the reject chain', () => {
    const service = vip();
    service.backends = [];
    assert.equal(selectorChainName(selectorOf(service)), 'sel_tcp_r_s_0');
    assert.deepEqual(parseSelectorChainName('psel_udp_h_n_7'), {
      published: true,
      protocol: 'udp',
      hash: true,
      snat: false,
      slots: 7,
    });
  });

  test('a damaged skeleton reads as no services so the next sync rewrites the scope', () => {
    const dump = parseScopeDump({ kind: 'host' }, { nftables: [{ map: { name: 'vips', elem: [] } }] });
    assert.equal(dump.skeletonIntact, false);
    assert.deepEqual(dump.services, []);
    assert.deepEqual(parseScopeDump({ kind: 'host' }, 'garbage').services, []);
  });
});
