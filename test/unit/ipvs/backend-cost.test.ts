/**
 * What an apply costs in kernel requests: proportional to the change, not to
 * the number of services (issue 7: a one-endpoint change at 5k services took
 * 849 ms in the VM lab because every apply re-rendered the scope's table).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IpvsLoadBalancer, LB_SYSCTLS } from '../../../dataplane/lb/ipvs/backend.js';
import { renderNetfilterDelta, type ScopeNetfilter } from '../../../dataplane/lb/ipvs/namespace.js';
import {
  emptyLbState,
  type LbBackend,
  type LbScope,
  type LbState,
  type LbVirtualService,
  virtualServiceKey,
} from '../../../dataplane/lb/types.js';
import { ManualClock } from '../../../src/common/clock.js';
import { MeshError } from '../../../src/common/errors.js';
import { FakeIpvsNamespace } from './fake-namespace.js';

const net: LbScope = { kind: 'network', networkId: 'n1' };
const ENDPOINTS = 10;

function service(i: number, weightOfFirst = 1): LbVirtualService {
  const address = `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  const backends: LbBackend[] = [];
  for (let e = 0; e < ENDPOINTS; e++)
    backends.push({ address: `10.2.${e}.${(i % 250) + 1}`, port: 8080, weight: e === 0 ? weightOfFirst : 1 });
  return {
    key: virtualServiceKey(net, 'tcp', address, 80),
    scope: net,
    protocol: 'tcp',
    address,
    port: 80,
    scheduler: 'random',
    snatAddress: '10.0.0.254',
    backends,
  };
}

function stateOf(services: LbVirtualService[]): LbState {
  const s = emptyLbState();
  for (const svc of services) s.services.set(svc.key, svc);
  return s;
}

function setup() {
  const ns = new FakeIpvsNamespace();
  const lb = new IpvsLoadBalancer({
    namespaceFor: () => ns,
    resolveScope: () => null,
    listScopes: () => [net],
    clock: new ManualClock(1_000),
  });
  return { ns, lb };
}

describe('IPVS backend: cost of an apply', () => {
  it('a full load goes to the kernel as one pipelined batch: one request per service and per endpoint', async () => {
    const { ns, lb } = setup();
    const services = Array.from({ length: 300 }, (_, i) => service(i));
    const result = await lb.apply(lb.plan(stateOf(services), emptyLbState()));
    assert.deepEqual(ns.batches, [300 * (1 + ENDPOINTS)]);
    assert.equal(result.kernelOperations, Object.keys(LB_SYSCTLS).length + 300 * (1 + ENDPOINTS) + 1);
    assert.equal(ns.netfilterSyncs, 1, 'the netfilter table is rendered once per apply, not per service');
    assert.equal(ns.netfilter?.vips.length, 300);
  });

  it('a one-endpoint change yields one request and leaves the netfilter table alone, at 10 or 1000 services', async () => {
    for (const size of [10, 1_000]) {
      const { ns, lb } = setup();
      const services = Array.from({ length: size }, (_, i) => service(i));
      const desired = stateOf(services);
      await lb.apply(lb.plan(desired, emptyLbState()));
      const syncsBefore = ns.netfilterSyncs;
      const callsBefore = ns.calls.length;
      const middle = Math.floor(size / 2);
      const next = stateOf(services.map((s, i) => (i === middle ? service(i, 0) : s)));
      const changes = lb.plan(next, desired);
      assert.equal(changes.length, 1);
      const result = await lb.apply(changes);
      assert.equal(result.kernelOperations, 1, `size ${size}`);
      assert.deepEqual(ns.calls.slice(callsBefore), [
        `updateDestination tcp ${services[middle]?.address}:80 10.2.0.${(middle % 250) + 1}:8080 w0`,
      ]);
      assert.equal(ns.netfilterSyncs, syncsBefore, `size ${size}: no netfilter render`);
    }
  });

  it('adding one service re-renders the netfilter table once, and sends only that service and its endpoints', async () => {
    const { ns, lb } = setup();
    const services = Array.from({ length: 50 }, (_, i) => service(i));
    await lb.apply(lb.plan(stateOf(services), emptyLbState()));
    const syncsBefore = ns.netfilterSyncs;
    const more = [...services, service(50)];
    await lb.apply(lb.plan(stateOf(more), stateOf(services)));
    assert.deepEqual(ns.batches.at(-1), 1 + ENDPOINTS);
    assert.equal(ns.netfilterSyncs, syncsBefore + 1);
    assert.equal(ns.netfilter?.vips.length, 51);
  });

  it('a SNAT address change alone re-renders the netfilter table', async () => {
    const { ns, lb } = setup();
    const one = service(0);
    await lb.apply(lb.plan(stateOf([one]), emptyLbState()));
    const moved = { ...one, snatAddress: '10.0.0.253' };
    await lb.apply(lb.plan(stateOf([moved]), stateOf([one])));
    assert.equal(ns.netfilter?.snatAddress, '10.0.0.253');
  });

  it('a refused request does not stop the batch: the rest is applied and apply reports the failure by code', async () => {
    const { ns, lb } = setup();
    const a = service(0);
    const b = service(1);
    // b already exists in the kernel (someone else made it): its add fails with EEXIST.
    await ns.addService({
      key: { kind: 'inet', protocol: 'tcp', address: b.address, port: 80 },
      scheduler: 'rr',
      schedFlags: { flag1: false, flag2: false, flag3: false },
      persistenceS: 0,
      netmask: 0xffffffff,
      onePacket: false,
      persistenceEngine: '',
    });
    await assert.rejects(
      lb.apply(lb.plan(stateOf([a, b]), emptyLbState())),
      (err: unknown) =>
        err instanceof MeshError &&
        err.code === 'IPVS_APPLY_FAILED' &&
        /1 of 22 requests failed .*IPVS_EEXIST/.test(err.message),
    );
    assert.equal(ns.services.get(`tcp ${a.address}:80`)?.dests.size, ENDPOINTS);
    assert.equal(ns.services.get(`tcp ${b.address}:80`)?.dests.size, ENDPOINTS, 'later requests still ran');
  });

  it('a netfilter spec that differs only in set elements is one delta of element deletes and adds; a SNAT change is not', () => {
    const from: ScopeNetfilter = {
      snatAddress: '10.0.0.254',
      vips: [
        { protocol: 'tcp', address: '10.0.0.2', port: 80 },
        { protocol: 'udp', address: '10.0.0.3', port: 53 },
      ],
      published: [{ protocol: 'tcp', port: 30080, mark: 1 }],
    };
    const to: ScopeNetfilter = {
      ...from,
      vips: [
        { protocol: 'tcp', address: '10.0.0.2', port: 80 },
        { protocol: 'tcp', address: '10.0.0.4', port: 81 },
      ],
      published: [{ protocol: 'tcp', port: 30080, mark: 2 }],
    };
    assert.equal(
      renderNetfilterDelta(from, to),
      [
        'delete element ip meshd_ipvs vips { 10.0.0.3 . udp . 53 }',
        'delete element ip meshd_ipvs port_marks { tcp . 30080 }',
        'add element ip meshd_ipvs vips { 10.0.0.4 . tcp . 81 }',
        'add element ip meshd_ipvs port_marks { tcp . 30080 : 2 }',
        '',
      ].join('\n'),
    );
    assert.equal(renderNetfilterDelta(from, from), '');
    assert.equal(renderNetfilterDelta(from, { ...from, snatAddress: null }), undefined);
  });
});
