import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect } from 'node:tls';
import type * as grpc from '@grpc/grpc-js';
import { BACKDATE_MS, createRootCA, HOUR_MS } from '../../../controlplane/ca/authority.js';
import { type NodeCertificate, renewNodeCertificate } from '../../../controlplane/ca/ca-client.js';
import { createCaServer } from '../../../controlplane/ca/ca-service.js';
import { CertificateAuthority } from '../../../controlplane/ca/certificate-authority.js';
import { createKeyAndCsr } from '../../../controlplane/ca/node-identity.js';
import {
  CertificateRenewer,
  certificateValidity,
  MAX_TIMER_DELAY_MS,
  RENEW_WINDOW_END,
  RENEW_WINDOW_START,
  renewalDelayMs,
} from '../../../controlplane/ca/renewal.js';
import { x509 } from '../../../controlplane/ca/x509.js';
import { ManualClock } from '../../../src/common/clock.js';
import { SeededRng } from '../../../src/common/rng.js';
import { callerIdentity, servicePolicy } from '../../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
  SECURE_CHANNEL_OPTIONS,
  type TlsMaterial,
} from '../../../src/common/transport/credentials.js';
import { EchoClient, echoAccess, echoHandlers, echoService, unaryCall } from '../transport/fixtures.js';

const SEED_BASE = Number(process.env['SEED'] ?? 1);

test('the renewal point falls between 50% and 80% of the lifetime, counted from issue', () => {
  for (let seed = SEED_BASE; seed < SEED_BASE + 500; seed++) {
    const rng = new SeededRng(seed);
    const issuedMs = 1_000_000 + rng.int(1_000_000);
    const lifetimeMs = HOUR_MS + Math.floor(rng.next() * 90 * 24 * HOUR_MS);
    const validity = { notBeforeMs: issuedMs - BACKDATE_MS, notAfterMs: issuedMs + lifetimeMs };
    const delay = renewalDelayMs(validity, issuedMs, rng);
    const fraction = delay / lifetimeMs;
    assert.ok(
      fraction >= RENEW_WINDOW_START && fraction <= RENEW_WINDOW_END,
      `seed ${seed}: renewal at ${fraction.toFixed(4)} of the lifetime (replay with SEED=${seed})`,
    );
  }
});

test('different seeds spread renewals over the window (no thundering herd)', () => {
  const validity = { notBeforeMs: -BACKDATE_MS, notAfterMs: HOUR_MS };
  const delays = new Set<number>();
  for (let seed = 0; seed < 50; seed++)
    delays.add(Math.floor(renewalDelayMs(validity, 0, new SeededRng(seed)) / 60_000));
  assert.ok(delays.size >= 10, `only ${delays.size} distinct minutes across 50 nodes`);
});

test('a failed renewal is retried with growing backoff, then succeeds', async () => {
  const clock = new ManualClock(0);
  const root = await createRootCA({ clusterId: 'renew', nowMs: 0 });
  const ca = new CertificateAuthority({ root, clock, lifetimeMs: HOUR_MS });
  const { csrPem, privateKeyPem } = await createKeyAndCsr();
  const first = await ca.issueForJoinToken(ca.joinTokens().worker, csrPem, []);
  let failures = 2;
  const renewer = new CertificateRenewer(
    { privateKeyPem, certChainPem: first.certChainPem, trustBundlePem: root.certPem },
    {
      clock,
      rng: new SeededRng(7),
      renew: async (m) => {
        if (failures-- > 0) throw new Error('manager unreachable');
        return m;
      },
      onRenewed: () => {},
    },
  );
  renewer.start();
  // Jump to just before the window (30 min), then 50 ms steps: a retry is
  // scheduled when the failed attempt settles, at the end of a step.
  clock.advance(29 * 60_000);
  assert.equal(renewer.attemptTimesMs.length, 0, 'no renewal before 50% of the lifetime');
  for (let i = 0; i < 200_000 && renewer.attemptTimesMs.length < 3; i++) {
    clock.advance(50);
    await renewer.settled();
  }
  renewer.stop();
  const [a, b, c] = renewer.attemptTimesMs;
  assert.ok(a !== undefined && b !== undefined && c !== undefined, `attempts: ${renewer.attemptTimesMs}`);
  assert.ok(b - a >= 500 && b - a <= 1050, `first retry after ${b - a} ms`);
  assert.ok(c - b >= 1000 && c - b <= 2050, `second retry after ${c - b} ms`);
  assert.equal(clock.pendingTimers(), 0);
});

test('a 90-day certificate waits in timer steps a Node.js timer keeps (none past 2^31-1 ms fires at once)', async () => {
  const clock = new ManualClock(0);
  const delays: number[] = [];
  const recording = {
    nowMs: () => clock.nowMs(),
    setTimer: (delayMs: number, fn: () => void) => {
      delays.push(delayMs);
      return clock.setTimer(delayMs, fn);
    },
  };
  const root = await createRootCA({ clusterId: 'renew', nowMs: 0 });
  const ca = new CertificateAuthority({ root, clock, lifetimeMs: 90 * 24 * HOUR_MS });
  const { csrPem, privateKeyPem } = await createKeyAndCsr();
  const issued = await ca.issueForJoinToken(ca.joinTokens().worker, csrPem, []);
  const renewer = new CertificateRenewer(
    { privateKeyPem, certChainPem: issued.certChainPem, trustBundlePem: root.certPem },
    { clock: recording, rng: new SeededRng(3), renew: async (m) => m, onRenewed: () => {} },
  );
  renewer.start();
  clock.advance(44 * 24 * HOUR_MS);
  assert.equal(renewer.attemptTimesMs.length, 0, 'no renewal before 50% of 90 days');
  clock.advance(28 * 24 * HOUR_MS);
  await renewer.settled();
  renewer.stop();
  assert.equal(renewer.attemptTimesMs.length, 1);
  assert.ok(delays.length >= 2 && delays.every((d) => d <= MAX_TIMER_DELAY_MS), `timer delays ${delays}`);
});

describe('renewal of a live node', () => {
  const clock = new ManualClock(Date.now());
  let ca: CertificateAuthority;
  let server: grpc.Server;
  let creds: ReloadableServerCredentials;
  let port: number;
  let node: NodeCertificate;
  const clients: grpc.Client[] = [];

  before(async () => {
    const root = await createRootCA({ clusterId: 'renew', nowMs: clock.nowMs() });
    ca = new CertificateAuthority({ root, clock, lifetimeMs: HOUR_MS });
    const { csrPem, privateKeyPem } = await createKeyAndCsr();
    const issued = await ca.issueForJoinToken(ca.joinTokens().manager, csrPem, ['127.0.0.1']);
    node = {
      nodeId: issued.nodeId,
      role: 'manager',
      clusterId: 'renew',
      notAfterMs: issued.notAfterMs,
      material: { privateKeyPem, certChainPem: issued.certChainPem, trustBundlePem: root.certPem },
    };
    server = createCaServer(ca, { clock, extraPolicy: servicePolicy(echoService, echoAccess) });
    server.addService(
      echoService,
      echoHandlers((call) => callerIdentity(call) ?? null),
    );
    creds = new ReloadableServerCredentials(node.material, { acceptClientsWithoutCertificate: true });
    port = await bindSecure(server, '127.0.0.1:0', creds);
  });

  after(() => {
    for (const c of clients) c.close();
    server.forceShutdown();
  });

  test('a node with a 1-hour certificate renews inside the 50-80% window and a live stream survives the reload', async () => {
    const peer = new EchoClient(
      `127.0.0.1:${port}`,
      createChannelCredentials(node.material, { clusterId: 'renew' }),
      SECURE_CHANNEL_OPTIONS,
    );
    clients.push(peer);
    const stream = (peer as unknown as Record<string, (r: object) => grpc.ClientReadableStream<unknown>>)[
      'watch'
    ]!({ intervalMs: 5 });
    let received = 0;
    let streamError: Error | undefined;
    stream.on('data', () => received++);
    stream.on('error', (e: Error) => {
      streamError = e;
    });
    await unaryCall(peer, 'echo', {});

    const issuedAtMs = clock.nowMs();
    let current = node;
    const renewer = new CertificateRenewer(node.material, {
      clock,
      rng: new SeededRng(SEED_BASE),
      renew: async () => {
        current = await renewNodeCertificate({
          target: `127.0.0.1:${port}`,
          current,
          addresses: ['127.0.0.1'],
        });
        return current.material;
      },
      onRenewed: (material: TlsMaterial) => creds.reload(material),
    });
    renewer.start();
    for (let minute = 0; minute < 60 && renewer.attemptTimesMs.length === 0; minute++) {
      clock.advance(60_000);
      await renewer.settled();
    }
    renewer.stop();
    const [at] = renewer.attemptTimesMs;
    assert.ok(at !== undefined, 'renewal ran');
    const fraction = (at - issuedAtMs) / HOUR_MS;
    assert.ok(
      fraction >= 0.5 && fraction <= 0.8 + 1 / 60,
      `renewed at ${fraction.toFixed(3)} of the lifetime (seed ${SEED_BASE})`,
    );
    assert.equal(current.nodeId, node.nodeId);
    assert.ok(certificateValidity(current.material.certChainPem).notAfterMs > node.notAfterMs);

    const before = received;
    await new Promise((r) => setTimeout(r, 60));
    assert.ok(received > before, 'the stream kept flowing after the reload');
    assert.equal(streamError, undefined);
    const servedSerial = await new Promise<string>((resolve, reject) => {
      const s = connect(
        {
          host: '127.0.0.1',
          port,
          ca: node.material.trustBundlePem,
          ALPNProtocols: ['h2'],
          checkServerIdentity: () => undefined,
        },
        () => {
          resolve(s.getPeerCertificate().serialNumber);
          s.destroy();
        },
      );
      s.on('error', reject);
    });
    assert.equal(
      servedSerial.toLowerCase(),
      new x509.X509Certificate(current.material.certChainPem).serialNumber.toLowerCase(),
    );
    stream.cancel();
  });
});
