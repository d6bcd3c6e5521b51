import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Decision, decide } from '../../../dataplane/dns/answerer.js';
import { buildIndex } from '../../../dataplane/dns/records.js';
import { parseQuery, RCODE, RRTYPE } from '../../../dataplane/dns/wire.js';
import { EndpointState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { SeededRng } from '../../../src/common/rng.js';
import { NET_APP, NET_DB, queryBytes, sampleState } from './fixtures.js';

const index = buildIndex(sampleState());
const APP = [NET_APP];

function ask(name: string, type: number, scope: readonly string[] = APP, seed = 1): Decision {
  const r = parseQuery(queryBytes(name, type));
  if (r.kind !== 'query') throw new Error(`bad test query ${name}`);
  return decide(index, scope, r.query, new SeededRng(seed));
}

function addresses(d: Decision): string[] {
  assert.equal(d.kind, 'answer');
  if (d.kind !== 'answer') return [];
  return d.answers.map((a) => (a.type === 'A' ? a.address : `?${a.type}`));
}

describe('dns answerer', () => {
  it('answers a vip service name with its VIP on the sandbox network, with the VIP TTL', () => {
    const d = ask('web', RRTYPE.A);
    assert.deepEqual(addresses(d), ['10.0.1.2']);
    assert.equal(d.kind === 'answer' && d.answers[0]?.ttlS, 30);
  });

  it('answers <service>.<network> the same way', () => {
    assert.deepEqual(addresses(ask('web.app', RRTYPE.A)), ['10.0.1.2']);
  });

  it('answers tasks.<service> with the active task IPs only (draining excluded), task TTL', () => {
    const d = ask('tasks.web', RRTYPE.A);
    assert.deepEqual(addresses(d), ['10.0.1.11', '10.0.1.12']);
    assert.equal(d.kind === 'answer' && d.answers[0]?.ttlS, 3);
  });

  it('matches names case-insensitively (a trailing dot never reaches the wire)', () => {
    assert.deepEqual(addresses(ask('TASKS.Web', RRTYPE.A)), ['10.0.1.11', '10.0.1.12']);
    assert.deepEqual(addresses(ask('web.', RRTYPE.A)), ['10.0.1.2']);
  });

  it('answers a dnsrr service with all active task IPs, shuffled by the injected Rng', () => {
    const orders = new Set<string>();
    for (let seed = 1; seed <= 30; seed++) {
      const got = addresses(ask('cache', RRTYPE.A, APP, seed));
      assert.deepEqual([...got].sort(), ['10.0.1.21', '10.0.1.22', '10.0.1.23']);
      orders.add(got.join(','));
    }
    assert.ok(orders.size > 1, 'shuffling must change the order across seeds');
    assert.deepEqual(addresses(ask('cache', RRTYPE.A, APP, 7)), addresses(ask('cache', RRTYPE.A, APP, 7)));
    const d = ask('cache', RRTYPE.A);
    assert.equal(d.kind === 'answer' && d.cacheable, false);
  });

  it('answers a task name with that task address, and a draining task name with no data', () => {
    assert.deepEqual(addresses(ask('web.1.t1', RRTYPE.A)), ['10.0.1.11']);
    const drained = ask('web.3.t3', RRTYPE.A);
    assert.equal(drained.kind === 'answer' && drained.rcode, RCODE.NOERROR);
    assert.deepEqual(addresses(drained), []);
  });

  it('keeps the name of a local task that is no active endpoint inside the cluster (no data, never forwarded)', () => {
    const d = ask('client.1.aaa', RRTYPE.A);
    assert.equal(d.kind === 'answer' && d.rcode, RCODE.NOERROR);
    assert.deepEqual(addresses(d), []);
  });

  it('answers NXDOMAIN for a service on a network the sandbox is not attached to', () => {
    const d = ask('pg', RRTYPE.A);
    assert.equal(d.kind === 'answer' && d.rcode, RCODE.NXDOMAIN);
    assert.deepEqual(addresses(ask('pg', RRTYPE.A, [NET_DB, NET_APP])), ['10.0.2.2']);
  });

  it('answers AAAA (and other types) for a cluster name with NOERROR and no records, never forwarding', () => {
    for (const type of [RRTYPE.AAAA, RRTYPE.MX, RRTYPE.TXT]) {
      const d = ask('web', type);
      assert.equal(d.kind, 'answer');
      assert.equal(d.kind === 'answer' && d.rcode, RCODE.NOERROR);
      assert.equal(d.kind === 'answer' && d.answers.length, 0);
    }
    const outOfScope = ask('PG.', RRTYPE.AAAA);
    assert.equal(outOfScope.kind, 'answer');
  });

  it('answers SRV _<port>._<proto>.<service> with the target port and the target address', () => {
    const d = ask('_http._tcp.web', RRTYPE.SRV);
    assert.equal(d.kind, 'answer');
    if (d.kind !== 'answer') return;
    assert.deepEqual(d.answers, [
      { type: 'SRV', name: undefined, ttlS: 30, priority: 0, weight: 0, port: 80, target: 'web' },
    ]);
    assert.deepEqual(d.additionals, [{ type: 'A', name: 'web', ttlS: 30, address: '10.0.1.2' }]);
    const rr = ask('_redis._tcp.cache', RRTYPE.SRV);
    assert.equal(rr.kind === 'answer' && rr.answers.length, 3);
  });

  it('answers PTR for task and VIP addresses in scope, NXDOMAIN for other cluster addresses', () => {
    const vip = ask('2.1.0.10.in-addr.arpa', RRTYPE.PTR);
    assert.equal(vip.kind === 'answer' && vip.answers[0]?.type === 'PTR' && vip.answers[0].target, 'web');
    const task = ask('11.1.0.10.in-addr.arpa', RRTYPE.PTR);
    assert.equal(
      task.kind === 'answer' && task.answers[0]?.type === 'PTR' && task.answers[0].target,
      'web.1.t1',
    );
    const other = ask('11.2.0.10.in-addr.arpa', RRTYPE.PTR);
    assert.equal(other.kind === 'answer' && other.rcode, RCODE.NXDOMAIN);
    const unusedInSubnet = ask('99.1.0.10.in-addr.arpa', RRTYPE.PTR);
    assert.equal(unusedInSubnet.kind === 'answer' && unusedInSubnet.rcode, RCODE.NXDOMAIN);
    assert.equal(ask('8.8.8.8.in-addr.arpa', RRTYPE.PTR).kind, 'forward');
  });

  it('forwards names that are not cluster names', () => {
    assert.equal(ask('example.com', RRTYPE.A).kind, 'forward');
    assert.equal(ask('tasks.unknown', RRTYPE.A).kind, 'forward');
  });

  it('reflects a desired-state change: a task added, drained, removed', () => {
    const state = sampleState(2);
    const web = state.services.find((s) => s.name === 'web')!;
    web.endpoints.push({
      taskId: 'id4',
      taskName: 'web.4.t4',
      nodeId: 'n',
      networkId: NET_APP,
      address: '10.0.1.14',
      state: EndpointState.ENDPOINT_STATE_ACTIVE,
    });
    web.endpoints[0]!.state = EndpointState.ENDPOINT_STATE_DRAINING;
    web.endpoints.splice(1, 1);
    const next = buildIndex(state);
    const r = parseQuery(queryBytes('tasks.web', RRTYPE.A));
    if (r.kind !== 'query') throw new Error('bad query');
    assert.deepEqual(addresses(decide(next, APP, r.query, new SeededRng(1))), ['10.0.1.14']);
  });

  it('skips records with bad addresses or names and says why, without throwing', () => {
    const state = sampleState();
    state.services[0]!.endpoints[0]!.address = 'not-an-ip';
    state.services[1]!.name = 'bad name!';
    const bad = buildIndex(state);
    assert.ok(bad.skipped.some((s) => s.includes('not-an-ip')));
    assert.ok(bad.skipped.some((s) => s.includes('bad name!')));
  });
});
