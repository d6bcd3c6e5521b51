import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  entryKey,
  type OverlayModel,
  type OverlayNetwork,
  type OverlayPeerEntry,
} from '../../../dataplane/overlay/model.js';
import { type OverlayChange, planOverlay } from '../../../dataplane/overlay/plan.js';

/** What the kernel would hold after `changes`, as the programmer applies them. */
function simulate(actual: OverlayModel, changes: OverlayChange[]): OverlayModel {
  const m: OverlayModel = {
    networks: new Map(actual.networks),
    entries: new Map(actual.entries),
    egressSubnets: [...actual.egressSubnets],
  };
  for (const c of changes) {
    switch (c.type) {
      case 'delete-network':
        m.networks.delete(c.netns);
        for (const [k, e] of m.entries) if (e.netns === c.netns) m.entries.delete(k);
        break;
      case 'create-network':
        assert.ok(!m.networks.has(c.network.netns), `create of existing ${c.network.netns}`);
        m.networks.set(c.network.netns, c.network);
        break;
      case 'set-bridge': {
        const n = m.networks.get(c.network.netns);
        assert.ok(n !== undefined, `set-bridge of missing ${c.network.netns}`);
        const kept = n.addresses.filter((x) => !c.removeAddresses.includes(x));
        m.networks.set(n.netns, {
          ...n,
          bridgeMac: c.network.bridgeMac,
          addresses: [...kept, ...c.addAddresses].sort(),
        });
        break;
      }
      case 'set-entry':
        assert.ok(m.networks.has(c.entry.netns), `entry before its network ${c.entry.netns}`);
        m.entries.set(entryKey(c.entry), c.entry);
        break;
      case 'delete-entry':
        m.entries.delete(entryKey(c.entry));
        break;
      case 'set-egress':
        m.egressSubnets = c.subnets;
        break;
    }
  }
  return m;
}

const netnsArb = fc.constantFrom('h-napp', 'h-ningress', 'h-nback');
const networkArb = (netns: string) =>
  fc
    .record({
      vni: fc.constantFrom(4096, 4097),
      mtu: fc.constantFrom(1400, 1450),
      // The LB address arrives later than the network: both shapes must converge in place.
      lb: fc.boolean(),
    })
    .map(
      (r): OverlayNetwork => ({
        netns,
        vni: r.vni,
        port: 4789,
        local: '10.99.0.11',
        mtu: r.mtu,
        bridgeMac: r.lb ? '02:42:0a:0a:00:fb' : '02:42:0a:0a:00:01',
        addresses: r.lb ? ['10.10.0.1/24', '10.10.0.251/24'] : ['10.10.0.1/24'],
        subnet: '10.10.0.0/24',
      }),
    );
const modelArb: fc.Arbitrary<OverlayModel> = fc
  .record({
    nets: fc.uniqueArray(netnsArb, { maxLength: 3 }).chain((names) => fc.tuple(...names.map(networkArb))),
    entries: fc.array(
      fc.record({
        netns: netnsArb,
        octet: fc.integer({ min: 2, max: 9 }),
        vtep: fc.constantFrom('10.99.0.12', '10.99.0.13'),
      }),
      { maxLength: 8 },
    ),
    egress: fc.uniqueArray(fc.constantFrom('10.10.0.0/24', '10.255.0.0/24'), { maxLength: 2 }),
  })
  .map(({ nets, entries, egress }) => {
    const networks = new Map(nets.map((n) => [n.netns, n]));
    const m: OverlayModel = { networks, entries: new Map(), egressSubnets: [...egress].sort() };
    for (const e of entries) {
      if (!networks.has(e.netns)) continue;
      const entry: OverlayPeerEntry = {
        netns: e.netns,
        address: `10.10.0.${e.octet}`,
        mac: `02:42:0a:0a:00:0${e.octet}`,
        vtep: e.vtep,
      };
      m.entries.set(entryKey(entry), entry);
    }
    return m;
  });

test('applying the plan turns any actual overlay into the desired one, and then plans nothing', () => {
  const seed = Number(process.env['SEED'] ?? Date.now() % 1_000_000);
  try {
    fc.assert(
      fc.property(modelArb, modelArb, (desired, actual) => {
        const after = simulate(actual, planOverlay(desired, actual));
        assert.deepEqual(after, desired);
        assert.deepEqual(planOverlay(desired, after), []);
      }),
      { seed, numRuns: 300 },
    );
  } catch (err) {
    console.error(`overlay plan property failed; replay with SEED=${seed}`);
    throw err;
  }
});
