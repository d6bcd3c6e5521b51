import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IpvsLoadBalancer, LB_SYSCTLS } from '../../../dataplane/lb/ipvs/backend.js';
import { renderNetfilter } from '../../../dataplane/lb/ipvs/namespace.js';
import { parseLbBackendChoice, selectLbBackend } from '../../../dataplane/lb/ipvs/select.js';
import {
  type IpvsServiceOptions,
  markToPublishedPort,
  publishedPortMark,
  scopeTimeouts,
} from '../../../dataplane/lb/ipvs/translate.js';
import {
  ANY_LOCAL_ADDRESS,
  emptyLbState,
  type LbBackend,
  type LbScope,
  type LbState,
  type LbVirtualService,
  virtualServiceKey,
} from '../../../dataplane/lb/types.js';
import { IPVS_UNAVAILABLE } from '../../../dataplane/netlink/ipvs/client.js';
import { ManualClock } from '../../../src/common/clock.js';
import { MeshError, ValidationError } from '../../../src/common/errors.js';
import { FakeIpvsNamespace } from './fake-namespace.js';

const net: LbScope = { kind: 'network', networkId: 'n1' };

function vip(backends: LbBackend[], protocol: 'tcp' | 'udp' = 'tcp'): LbVirtualService {
  return {
    key: virtualServiceKey(net, protocol, '10.0.0.2', 80),
    scope: net,
    protocol,
    address: '10.0.0.2',
    port: 80,
    scheduler: 'random',
    snatAddress: '10.0.0.254',
    backends,
  };
}

function state(...services: LbVirtualService[]): LbState {
  const s = emptyLbState();
  for (const svc of services) s.services.set(svc.key, svc);
  return s;
}

function options(o: Partial<IpvsServiceOptions> = {}): IpvsServiceOptions {
  return { scheduler: 'rr', tcpTimeoutS: 0, tcpFinTimeoutS: 0, udpTimeoutS: 0, drainTimeoutMs: 10_000, ...o };
}

function setup() {
  const ns = new FakeIpvsNamespace();
  const clock = new ManualClock(1_000);
  const lb = new IpvsLoadBalancer({
    namespaceFor: () => ns,
    resolveScope: () => null,
    listScopes: () => [net, { kind: 'host' }],
    clock,
  });
  const sync = async (desired: LbState) => {
    await lb.sweepDrains();
    const changes = lb.plan(desired, await lb.dump());
    await lb.apply(changes);
    return changes;
  };
  return { ns, clock, lb, sync };
}

const b = (address: string, weight = 1): LbBackend => ({ address, port: 8080, weight });

describe('IPVS backend', () => {
  it('a first sync sets the vs sysctls, creates the service and its destinations, and a second sync changes nothing', async () => {
    const { ns, sync } = setup();
    const desired = state(vip([b('10.0.0.5'), b('10.0.0.6')]));
    assert.equal((await sync(desired)).length, 1);
    assert.deepEqual(Object.fromEntries(ns.sysctls), LB_SYSCTLS);
    assert.deepEqual(ns.netfilter?.vips, [{ protocol: 'tcp', address: '10.0.0.2', port: 80 }]);
    assert.equal(ns.netfilter?.snatAddress, '10.0.0.254');
    assert.deepEqual(
      [...(ns.services.get('tcp 10.0.0.2:80')?.dests.keys() ?? [])],
      ['10.0.0.5:8080', '10.0.0.6:8080'],
    );
    assert.deepEqual(await sync(desired), []);
  });

  it('a draining endpoint gets weight 0, then is removed once its active connections reach 0', async () => {
    const { ns, sync } = setup();
    await sync(state(vip([b('10.0.0.5'), b('10.0.0.6')])));
    const key = { kind: 'inet', protocol: 'tcp', address: '10.0.0.2', port: 80 } as const;
    ns.setActiveConns(key, '10.0.0.6', 8080, 2);
    const draining = state(vip([b('10.0.0.5'), b('10.0.0.6', 0)]));
    await sync(draining);
    assert.equal(ns.services.get('tcp 10.0.0.2:80')?.dests.get('10.0.0.6:8080')?.weight, 0);
    assert.deepEqual(await sync(draining), [], 'still draining: nothing to do');
    assert.ok(ns.services.get('tcp 10.0.0.2:80')?.dests.has('10.0.0.6:8080'));
    ns.setActiveConns(key, '10.0.0.6', 8080, 0);
    assert.deepEqual(
      await sync(draining),
      [],
      'the sweep removes it; the model still sees a weight-0 endpoint',
    );
    assert.ok(!ns.services.get('tcp 10.0.0.2:80')?.dests.has('10.0.0.6:8080'));
    // The endpoint finally leaves the desired state: no second delete in the kernel.
    const callsBefore = ns.calls.length;
    await sync(state(vip([b('10.0.0.5')])));
    assert.deepEqual(ns.calls.slice(callsBefore), []);
  });

  it('a draining endpoint that keeps connections is removed when the drain deadline passes', async () => {
    const { ns, clock, lb, sync } = setup();
    lb.setServiceOptions(new Map([[vip([]).key, options({ drainTimeoutMs: 5_000 })]]));
    await sync(state(vip([b('10.0.0.5'), b('10.0.0.6')])));
    ns.setActiveConns({ kind: 'inet', protocol: 'tcp', address: '10.0.0.2', port: 80 }, '10.0.0.6', 8080, 3);
    await sync(state(vip([b('10.0.0.5'), b('10.0.0.6', 0)])));
    clock.advance(4_999);
    assert.equal(await lb.sweepDrains(), 0);
    clock.advance(1);
    assert.equal(await lb.sweepDrains(), 1);
    assert.ok(!ns.services.get('tcp 10.0.0.2:80')?.dests.has('10.0.0.6:8080'));
  });

  it('a reactivated draining endpoint gets its weight back and is no longer swept', async () => {
    const { ns, lb, sync } = setup();
    await sync(state(vip([b('10.0.0.5'), b('10.0.0.6')])));
    ns.setActiveConns({ kind: 'inet', protocol: 'tcp', address: '10.0.0.2', port: 80 }, '10.0.0.6', 8080, 1);
    await sync(state(vip([b('10.0.0.5'), b('10.0.0.6', 0)])));
    await sync(state(vip([b('10.0.0.5'), b('10.0.0.6')])));
    ns.setActiveConns({ kind: 'inet', protocol: 'tcp', address: '10.0.0.2', port: 80 }, '10.0.0.6', 8080, 0);
    assert.equal(await lb.sweepDrains(), 0);
    assert.equal(ns.services.get('tcp 10.0.0.2:80')?.dests.get('10.0.0.6:8080')?.weight, 1);
  });

  it('removing a UDP endpoint flushes its conntrack entries (stale entries blackholed traffic: moby#36878)', async () => {
    const { ns, sync } = setup();
    await sync(state(vip([b('10.0.0.5'), b('10.0.0.6')], 'udp')));
    await sync(state(vip([b('10.0.0.5')], 'udp')));
    assert.deepEqual(ns.flushed, ['10.0.0.6:8080']);
    await sync(state());
    assert.deepEqual(ns.flushed, ['10.0.0.6:8080', '10.0.0.5:8080']);
    assert.equal(ns.services.size, 0);
  });

  it('services wiped by hand (ipvsadm -C) are recreated by the next sync', async () => {
    const { ns, sync } = setup();
    const desired = state(vip([b('10.0.0.5'), b('10.0.0.6')]));
    await sync(desired);
    ns.flushAll();
    const repairs = await sync(desired);
    assert.deepEqual(
      repairs.map((c) => c.type),
      ['add-service'],
    );
    assert.equal(ns.services.get('tcp 10.0.0.2:80')?.dests.size, 2);
  });

  it('a fresh process (meshd dataplane dump) reads back what another programmed, SNAT address and mh included: no drift', async () => {
    const { ns, lb, sync } = setup();
    const desired = state({ ...vip([b('10.0.0.5'), b('10.0.0.6')]), scheduler: 'source-hash' });
    lb.setServiceOptions(new Map([[vip([]).key, options({ scheduler: 'mh' })]]));
    await sync(desired);
    const fresh = new IpvsLoadBalancer({
      namespaceFor: () => ns,
      resolveScope: () => null,
      listScopes: () => [net, { kind: 'host' }],
      clock: new ManualClock(1_000),
    });
    // As ipvsProgrammer.desired does before every plan.
    fresh.setServiceOptions(new Map([[vip([]).key, options({ scheduler: 'mh' })]]));
    const dumped = await fresh.dump();
    assert.equal(dumped.services.get(vip([]).key)?.snatAddress, '10.0.0.254');
    assert.deepEqual(fresh.plan(desired, dumped), []);
  });

  it('a per-service scheduler is programmed, and changing only the scheduler is planned as an update', async () => {
    const { ns, lb, sync } = setup();
    const desired = state(vip([b('10.0.0.5')]));
    lb.setServiceOptions(new Map([[vip([]).key, options({ scheduler: 'wrr' })]]));
    await sync(desired);
    assert.equal(ns.services.get('tcp 10.0.0.2:80')?.service.scheduler, 'wrr');
    lb.setServiceOptions(new Map([[vip([]).key, options({ scheduler: 'mh' })]]));
    await sync(desired);
    const svc = ns.services.get('tcp 10.0.0.2:80')?.service;
    assert.equal(svc?.scheduler, 'mh');
    assert.equal(svc?.schedFlags.flag1, true, 'mh falls back past weight-0 destinations');
  });

  it("per-service timeouts set the namespace's IPVS timeouts to the largest any service asked for", async () => {
    const { ns, lb, sync } = setup();
    const other = {
      ...vip([b('10.0.0.7')]),
      key: virtualServiceKey(net, 'tcp', '10.0.0.3', 80),
      address: '10.0.0.3',
    };
    lb.setServiceOptions(
      new Map([
        [vip([]).key, options({ tcpTimeoutS: 3600 })],
        [other.key, options({ tcpTimeoutS: 7200, udpTimeoutS: 60 })],
      ]),
    );
    await sync(state(vip([b('10.0.0.5')]), other));
    assert.deepEqual(ns.timeouts, { tcpS: 7200, tcpFinS: 120, udpS: 60 });
    assert.deepEqual(scopeTimeouts([]), { tcpS: 0, tcpFinS: 0, udpS: 0 });
  });

  it('a published port on every local address is a fwmark service whose mark decodes back to protocol and port', async () => {
    const { ns, sync } = setup();
    const host: LbScope = { kind: 'host' };
    const published: LbVirtualService = {
      key: virtualServiceKey(host, 'udp', ANY_LOCAL_ADDRESS, 30053),
      scope: host,
      protocol: 'udp',
      address: ANY_LOCAL_ADDRESS,
      port: 30053,
      scheduler: 'random',
      snatAddress: null,
      backends: [b('10.255.0.2')],
    };
    await sync(state(published));
    const mark = publishedPortMark('udp', 30053, false);
    assert.deepEqual(markToPublishedPort(mark), { protocol: 'udp', port: 30053, snat: false });
    assert.deepEqual(markToPublishedPort(publishedPortMark('tcp', 80, true)), {
      protocol: 'tcp',
      port: 80,
      snat: true,
    });
    assert.equal(markToPublishedPort(7), null);
    assert.ok(ns.services.has(`fwmark ${mark}`));
    assert.deepEqual(ns.netfilter?.published, [{ protocol: 'udp', port: 30053, mark }]);
    assert.deepEqual(await sync(state(published)), []);
    // Gaining SNAT moves the port to another mark: the old IPVS service goes, the new one comes.
    const snatted = { ...published, snatAddress: '10.0.0.254' };
    await sync(state(snatted));
    const snatMark = publishedPortMark('udp', 30053, true);
    assert.deepEqual([...ns.services.keys()], [`fwmark ${snatMark}`]);
    assert.deepEqual(await sync(state(snatted)), []);
  });

  it('scopes that share one namespace share its netfilter state: a VIP and a published port both stay programmed', async () => {
    const { ns, sync } = setup();
    const host: LbScope = { kind: 'host' };
    const published: LbVirtualService = {
      key: virtualServiceKey(host, 'tcp', ANY_LOCAL_ADDRESS, 30080),
      scope: host,
      protocol: 'tcp',
      address: ANY_LOCAL_ADDRESS,
      port: 30080,
      scheduler: 'random',
      snatAddress: null,
      backends: [b('10.0.0.5')],
    };
    await sync(state(vip([b('10.0.0.5')]), published));
    assert.deepEqual(ns.netfilter?.vips, [{ protocol: 'tcp', address: '10.0.0.2', port: 80 }]);
    assert.equal(ns.netfilter?.published.length, 1);
  });

  it('the netfilter script replaces the table atomically and SNATs only marked (balanced) connections', () => {
    const script = renderNetfilter({
      snatAddress: '10.0.0.254',
      vips: [{ protocol: 'tcp', address: '10.0.0.2', port: 80 }],
      published: [{ protocol: 'tcp', port: 30080, mark: publishedPortMark('tcp', 30080, false) }],
    });
    assert.match(script, /^table ip meshd_ipvs \{\}\ndelete table ip meshd_ipvs\n/);
    assert.match(script, /snat ip to 10\.0\.0\.254/);
    assert.match(script, /add element ip meshd_ipvs vips \{ 10\.0\.0\.2 \. tcp \. 80 \}/);
    assert.doesNotMatch(renderNetfilter({ snatAddress: null, vips: [], published: [] }), /snat/);
  });
});

describe('LB backend selection', () => {
  const unavailable = async () => {
    throw new MeshError(IPVS_UNAVAILABLE, 'IPVS is not available: the family "IPVS" does not resolve');
  };
  it('auto picks IPVS when the family resolves and nftables when it does not, saying why', async () => {
    assert.deepEqual(await selectLbBackend('auto', async () => {}), {
      backend: 'ipvs',
      reason: 'auto: the IPVS generic-netlink family resolved',
    });
    const fallback = await selectLbBackend('auto', unavailable);
    assert.equal(fallback.backend, 'nftables');
    assert.match(fallback.reason, /does not resolve/);
  });

  it('an explicit choice wins, and "ipvs" on a kernel without IPVS is an error, not a silent fallback', async () => {
    assert.equal((await selectLbBackend('nftables', unavailable)).backend, 'nftables');
    await assert.rejects(selectLbBackend('ipvs', unavailable), (err: unknown) => {
      return (
        err instanceof MeshError && err.code === IPVS_UNAVAILABLE && /configured as "ipvs"/.test(err.message)
      );
    });
  });

  it('an unknown backend name in config names the field and the accepted values', () => {
    assert.throws(
      () => parseLbBackendChoice('lvs'),
      (err: unknown) => err instanceof ValidationError && /auto, ipvs, nftables; got "lvs"/.test(err.message),
    );
  });

  it('on this host kernel (no IPVS) auto selection falls back to nftables', async (t) => {
    const selection = await selectLbBackend('auto', async () => {
      const { IpvsClient } = await import('../../../dataplane/netlink/ipvs/client.js');
      (await IpvsClient.open({ modprobe: false })).close();
    });
    if (selection.backend === 'ipvs') t.skip('this kernel has IPVS');
    else assert.match(selection.reason, /nftables/);
  });
});

describe('createIpvsLoadBalancer', () => {
  it('builds the ipvs backend without touching the kernel until the first sync', async () => {
    const { createIpvsLoadBalancer } = await import('../../../dataplane/lb/ipvs/create.js');
    const made = createIpvsLoadBalancer({ resolveScope: () => null, listScopes: () => [] });
    assert.equal(made.lb.backendName, 'ipvs');
    assert.deepEqual(made.lb.plan(emptyLbState(), emptyLbState()), []);
    made.close();
  });
});
