import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { Forwarder } from '../../../dataplane/dns/forwarder.js';
import { DnsMetrics } from '../../../dataplane/dns/metrics.js';
import { RateLimitedLog } from '../../../dataplane/dns/ratelimit.js';
import { parseQuery, RRTYPE } from '../../../dataplane/dns/wire.js';
import { systemClock } from '../../../src/common/clock.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import { SeededRng } from '../../../src/common/rng.js';
import { decode, queryBytes } from './fixtures.js';
import { FakeUpstream } from './harness.js';

const ATTEMPT_TIMEOUT_MS = 150;

function query(name: string, id: number) {
  const bytes = queryBytes(name, RRTYPE.A, { id });
  const r = parseQuery(bytes);
  if (r.kind !== 'query') throw new Error('bad test query');
  return { bytes, query: r.query };
}

describe('dns forwarder across upstreams', () => {
  let dead: FakeUpstream;
  let alive: FakeUpstream;
  let forwarder: Forwarder;
  let registry: Registry;

  before(async () => {
    dead = await FakeUpstream.start();
    dead.mode = 'silent';
    alive = await FakeUpstream.start();
    alive.addresses = ['192.0.2.7'];
    registry = new Registry();
    forwarder = new Forwarder(
      [
        { address: '127.0.0.1', port: dead.port, family: 4 },
        { address: '127.0.0.1', port: alive.port, family: 4 },
      ],
      systemClock,
      new SeededRng(3),
      new DnsMetrics(registry),
      new RateLimitedLog(subsystemLogger('dns-test'), systemClock),
      { attemptTimeoutMs: ATTEMPT_TIMEOUT_MS, maxAttempts: 3, maxInFlight: 16, maxTcpResponseBytes: 65535 },
    );
  });

  after(() => {
    forwarder.close();
    dead.close();
    alive.close();
  });

  it('retries on the next upstream after a timeout, then prefers the one that answered', async () => {
    const first = query('a.example.com', 0x1111);
    const startMs = Date.now();
    const r1 = await forwarder.forward(first.bytes, first.query);
    const firstMs = Date.now() - startMs;
    assert.equal(r1.kind, 'answer');
    if (r1.kind === 'answer') {
      assert.equal(decode(r1.bytes).header.id, 0x1111);
      assert.equal(decode(r1.bytes).answers[0]?.address, '192.0.2.7');
    }
    assert.ok(
      firstMs >= ATTEMPT_TIMEOUT_MS - 10,
      `answered before the first attempt timed out: ${firstMs} ms`,
    );
    assert.deepEqual(dead.seenNames, ['a.example.com']);

    const second = query('b.example.com', 0x2222);
    const start2 = Date.now();
    const r2 = await forwarder.forward(second.bytes, second.query);
    assert.equal(r2.kind, 'answer');
    assert.ok(Date.now() - start2 < ATTEMPT_TIMEOUT_MS, 'the answering upstream is asked first next time');
    assert.deepEqual(dead.seenNames, ['a.example.com']);
    assert.equal(forwarder.queriesInFlight, 0);
  });

  it('ignores a reply with the right ID but another question (a spoofed answer), then gives up', async () => {
    alive.mode = 'forge';
    dead.mode = 'forge';
    const q = query('victim.example.com', 0x3333);
    const r = await forwarder.forward(q.bytes, q.query);
    assert.deepEqual(r, { kind: 'servfail', reason: 'timeout' });
    assert.match(await registry.metrics(), /meshd_dns_upstream_errors_total\{reason="mismatch"\} [1-9]/);
    alive.mode = 'answer';
    dead.mode = 'silent';
  });
});
