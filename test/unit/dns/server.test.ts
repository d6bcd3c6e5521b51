import assert from 'node:assert/strict';
import type dgram from 'node:dgram';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { DnsServer } from '../../../dataplane/dns/server.js';
import { RCODE, RRTYPE } from '../../../dataplane/dns/wire.js';
import { EndpointState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { SeededRng } from '../../../src/common/rng.js';
import { decode, NET_APP, queryBytes, sampleState } from './fixtures.js';
import { bindUdp, FakeUpstream, framed, listenTcp, tcpExchange, udpExchange } from './harness.js';

const ATTEMPT_TIMEOUT_MS = 150;
const MAX_ATTEMPTS = 2;

describe('dns server over loopback', () => {
  let upstream: FakeUpstream;
  let server: DnsServer;
  let registry: Registry;
  let udp: dgram.Socket;
  let tcp: net.Server;
  let udpPort: number;
  let tcpPort: number;

  before(async () => {
    upstream = await FakeUpstream.start();
    registry = new Registry();
    server = new DnsServer({
      registry,
      upstreams: [{ address: '127.0.0.1', port: upstream.port, family: 4 }],
      rng: new SeededRng(42),
      limits: { tcpIdleTimeoutMs: 300 },
      forwarderLimits: { attemptTimeoutMs: ATTEMPT_TIMEOUT_MS, maxAttempts: MAX_ATTEMPTS, maxInFlight: 8 },
    });
    server.update(sampleState());
    udp = await bindUdp();
    tcp = await listenTcp();
    udpPort = udp.address().port;
    tcpPort = (tcp.address() as net.AddressInfo).port;
    server.attach('client', { udp, tcp });
  });

  after(() => {
    server.close();
    upstream.close();
  });

  it('answers cluster names itself and never sends them upstream, in any case or type', async () => {
    upstream.seenNames.length = 0;
    const a = decode(await udpExchange(udpPort, queryBytes('web', RRTYPE.A, { id: 11 })));
    assert.equal(a.answers[0]?.address, '10.0.1.2');
    for (const [name, type] of [
      ['WEB', RRTYPE.AAAA],
      ['Tasks.Web', RRTYPE.AAAA],
      ['pg', RRTYPE.AAAA],
      ['web.app', RRTYPE.TXT],
    ] as const) {
      const r = decode(await udpExchange(udpPort, queryBytes(name, type, { id: 12 })));
      assert.notEqual(r.header.rcode, RCODE.SERVFAIL, name);
      assert.equal(r.answers.length, 0, name);
    }
    assert.deepEqual(upstream.seenNames, []);
  });

  it('forwards other names with a fresh upstream ID and gives the answer back under the client ID', async () => {
    upstream.mode = 'answer';
    upstream.seenIds.length = 0;
    const ids = Array.from({ length: 8 }, (_, i) => 1000 + i);
    const replies = await Promise.all(
      ids.map((id) => udpExchange(udpPort, queryBytes(`host${id}.example.com`, RRTYPE.A, { id }))),
    );
    replies.forEach((bytes, i) => {
      const p = decode(bytes);
      assert.equal(p.header.id, ids[i]);
      assert.equal(p.questions[0]?.name, `host${ids[i]}.example.com`);
      assert.equal(p.answers[0]?.address, '192.0.2.1');
    });
    assert.equal(upstream.seenIds.length, 8);
  });

  it('answers SERVFAIL within attempts x timeout when the upstream is silent', async () => {
    upstream.mode = 'silent';
    const startMs = Date.now();
    const r = decode(await udpExchange(udpPort, queryBytes('slow.example.com', RRTYPE.A, { id: 77 })));
    const elapsedMs = Date.now() - startMs;
    assert.equal(r.header.rcode, RCODE.SERVFAIL);
    assert.ok(elapsedMs >= ATTEMPT_TIMEOUT_MS * MAX_ATTEMPTS - 20, `too early: ${elapsedMs} ms`);
    assert.ok(elapsedMs < ATTEMPT_TIMEOUT_MS * MAX_ATTEMPTS + 500, `stalled: ${elapsedMs} ms`);
    upstream.mode = 'answer';
  });

  it('answers SERVFAIL at once past the bound on forwarded queries in flight', async () => {
    upstream.mode = 'silent';
    const startMs = Date.now();
    const replies = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        udpExchange(udpPort, queryBytes(`flood${i}.example.com`, RRTYPE.A, { id: 2000 + i })).then((b) => ({
          rcode: decode(b).header.rcode,
          ms: Date.now() - startMs,
        })),
      ),
    );
    const fast = replies.filter((r) => r.ms < ATTEMPT_TIMEOUT_MS);
    assert.equal(fast.length, 4, 'the 4 queries past the bound of 8 fail fast');
    assert.ok(replies.every((r) => r.rcode === RCODE.SERVFAIL));
    upstream.mode = 'answer';
  });

  it('refetches a truncated upstream answer over TCP', async () => {
    upstream.mode = 'truncate';
    upstream.addresses = ['192.0.2.1', '192.0.2.2', '192.0.2.3'];
    const r = decode(
      await udpExchange(udpPort, queryBytes('big.example.com', RRTYPE.A, { id: 300, edns: true })),
    );
    assert.equal(r.header.tc, 0);
    assert.deepEqual(
      r.answers.map((a) => a.address),
      ['192.0.2.1', '192.0.2.2', '192.0.2.3'],
    );
    upstream.mode = 'answer';
    upstream.addresses = ['192.0.2.1'];
  });

  it('answers over TCP, and closes connections that send an oversized frame or stall', async () => {
    const r = await tcpExchange(tcpPort, framed(queryBytes('tasks.web', RRTYPE.A, { id: 9 })));
    assert.ok(r !== undefined);
    assert.deepEqual(
      decode(r).answers.map((a) => a.address),
      ['10.0.1.11', '10.0.1.12'],
    );
    const oversized = Buffer.alloc(10);
    oversized.writeUInt16BE(60000, 0);
    assert.equal(await tcpExchange(tcpPort, oversized), undefined);
    // A client that sends half a length prefix and stalls is cut off at the idle timeout.
    assert.equal(await tcpExchange(tcpPort, Buffer.from([0]), 2000), undefined);
  });

  it('closes a TCP connection whose client sends queries but never reads the answers', async () => {
    const frame = framed(queryBytes('_redis._tcp.cache', RRTYPE.SRV, { id: 1 }));
    const burst = Buffer.concat(Array.from({ length: 2000 }, () => frame));
    const closed = await new Promise<boolean>((resolve) => {
      const conn = net.connect(tcpPort, '127.0.0.1');
      const timer = setTimeout(() => {
        conn.destroy();
        resolve(false);
      }, 15_000);
      let writes = 0;
      // Enough answers (~20 MB) to overflow both loopback socket buffers at their
      // autotuned maximum (tcp_rmem + tcp_wmem, ~10 MB), so the server must notice.
      const bursts = 120;
      const pump = (): void => {
        // No 'data' listener while writing: answers pile up on the server side.
        while (writes < bursts && conn.write(burst)) writes++;
        if (writes < bursts) conn.once('drain', pump);
        // A paused socket never sees the reset; read now to observe it.
        else setTimeout(() => conn.resume(), 300);
      };
      conn.on('connect', pump);
      conn.on('error', () => {});
      conn.on('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    assert.ok(closed, 'the server must cut off a client that does not read');
    assert.match(await registry.metrics(), /meshd_dns_dropped_total\{reason="overload"\} [1-9]/);
  });

  it('answers FORMERR to a malformed query and stays up', async () => {
    const bad = Buffer.from([0, 5, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    const r = decode(await udpExchange(udpPort, bad));
    assert.equal(r.header.rcode, RCODE.FORMERR);
    const ok = decode(await udpExchange(udpPort, queryBytes('web', RRTYPE.A, { id: 6 })));
    assert.equal(ok.answers[0]?.address, '10.0.1.2');
  });

  it('reflects a desired-state change in the next query (the answer cache is dropped)', async () => {
    const before1 = decode(await udpExchange(udpPort, queryBytes('tasks.web', RRTYPE.A, { id: 20 })));
    assert.equal(before1.answers.length, 2);
    const state = sampleState(2);
    const web = state.services.find((s) => s.name === 'web')!;
    web.endpoints[0]!.state = EndpointState.ENDPOINT_STATE_DRAINING;
    web.endpoints.push({
      taskId: 'n',
      taskName: 'web.9.t9',
      nodeId: 'n',
      networkId: NET_APP,
      address: '10.0.1.19',
      state: EndpointState.ENDPOINT_STATE_ACTIVE,
    });
    server.update(state);
    const after1 = decode(await udpExchange(udpPort, queryBytes('tasks.web', RRTYPE.A, { id: 21 })));
    assert.deepEqual(
      after1.answers.map((a) => a.address),
      ['10.0.1.12', '10.0.1.19'],
    );
    server.update(sampleState(3));
  });

  it('counts queries, responses by rcode, forwarded queries and upstream errors', async () => {
    const text = await registry.metrics();
    assert.match(text, /meshd_dns_queries_total\{transport="udp"\} \d+/);
    assert.match(text, /meshd_dns_responses_total\{rcode="NOERROR"\} \d+/);
    assert.match(text, /meshd_dns_responses_total\{rcode="SERVFAIL"\} \d+/);
    assert.match(text, /meshd_dns_forwarded_total \d+/);
    assert.match(text, /meshd_dns_upstream_errors_total\{reason="timeout"\} \d+/);
    assert.match(text, /meshd_dns_upstream_latency_seconds_bucket/);
  });
});

describe('dns server: per-sandbox bound on forwarded queries', () => {
  it('answers SERVFAIL at once to a sandbox past its own forwarding bound', async () => {
    const upstream = await FakeUpstream.start();
    upstream.mode = 'silent';
    const server = new DnsServer({
      registry: new Registry(),
      upstreams: [{ address: '127.0.0.1', port: upstream.port, family: 4 }],
      limits: { maxForwardedPerSandbox: 2 },
      forwarderLimits: { attemptTimeoutMs: ATTEMPT_TIMEOUT_MS, maxAttempts: 1, maxInFlight: 100 },
    });
    const udp = await bindUdp();
    server.attach('client', { udp });
    try {
      const startMs = Date.now();
      const times = await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          udpExchange(udp.address().port, queryBytes(`x${i}.example.com`, RRTYPE.A, { id: 500 + i })).then(
            () => Date.now() - startMs,
          ),
        ),
      );
      assert.equal(times.filter((ms) => ms < ATTEMPT_TIMEOUT_MS).length, 3);
    } finally {
      server.close();
      upstream.close();
    }
  });
});
