// npm run bench -- pki [--certs N] [--handshakes N] [--calls N]
//
// 1. Certificates issued per second (CSR verify + sign), against raw ECDSA
//    P-256 signatures per second in the same run.
// 2. mTLS handshakes per second (TLS 1.3, both sides present certificates),
//    against server-only TLS 1.3 handshakes.
// 3. Latency of a unary gRPC call through the authorization interceptor,
//    against the same call on the same mTLS server without it.
import { performance } from 'node:perf_hooks';
import { connect, createServer, type TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { createRootCA, issueNodeCertificate } from '../../controlplane/ca/authority.js';
import { createKeyAndCsr } from '../../controlplane/ca/node-identity.js';
import { ecdsaP256, generateKeyPair } from '../../controlplane/ca/x509.js';
import {
  callerIdentity,
  createAuthorizationInterceptor,
  servicePolicy,
} from '../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
  SECURE_CHANNEL_OPTIONS,
  type TlsMaterial,
} from '../../src/common/transport/credentials.js';
import {
  EchoClient,
  echoAccess,
  echoHandlers,
  echoService,
  nodeMaterial,
  unaryCall,
} from '../../test/unit/transport/fixtures.js';
import type { BenchContext, Benchmark } from './types.js';

function intFlag(ctx: BenchContext, name: string, fallback: number): number {
  const v = ctx.flags.get(name);
  const n = typeof v === 'string' ? Number(v) : fallback;
  if (!Number.isInteger(n) || n < 1 || n > 100_000)
    throw new Error(`--${name} must be an integer 1..100000, got ${v}`);
  return n;
}

async function benchIssuance(ctx: BenchContext, count: number): Promise<void> {
  const root = await createRootCA({ clusterId: 'bench', nowMs: Date.now() });
  const csrs: string[] = [];
  for (let i = 0; i < count; i++) csrs.push((await createKeyAndCsr()).csrPem);
  const t0 = performance.now();
  for (const [i, csrPem] of csrs.entries())
    await issueNodeCertificate(root, {
      csrPem,
      nodeId: `node${i}`,
      role: 'worker',
      clusterId: 'bench',
      addresses: ['10.0.0.1'],
      nowMs: Date.now(),
    });
  const issuedPerSec = count / ((performance.now() - t0) / 1000);
  const { keys } = await generateKeyPair();
  const data = new Uint8Array(512);
  const t1 = performance.now();
  for (let i = 0; i < count; i++) await crypto.subtle.sign(ecdsaP256, keys.privateKey, data);
  const signsPerSec = count / ((performance.now() - t1) / 1000);
  ctx.report({ metric: 'certificates issued', value: issuedPerSec, unit: '/s', n: count });
  ctx.report({ metric: 'reference: raw ECDSA P-256 signatures', value: signsPerSec, unit: '/s', n: count });
  ctx.report({ metric: 'issue / raw sign', value: issuedPerSec / signsPerSec, unit: 'ratio' });
}

async function handshakesPerSec(
  server: TlsMaterial,
  client: TlsMaterial | undefined,
  count: number,
): Promise<number> {
  const tlsServer = createServer({
    minVersion: 'TLSv1.3',
    key: server.privateKeyPem,
    cert: server.certChainPem,
    ca: server.trustBundlePem,
    requestCert: client !== undefined,
    rejectUnauthorized: client !== undefined,
  });
  tlsServer.on('secureConnection', (s: TLSSocket) => s.end());
  await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
  const port = (tlsServer.address() as { port: number }).port;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    await new Promise<void>((resolve, reject) => {
      const s = connect(
        {
          host: '127.0.0.1',
          port,
          minVersion: 'TLSv1.3',
          ca: server.trustBundlePem,
          checkServerIdentity: () => undefined,
          ...(client === undefined ? {} : { key: client.privateKeyPem, cert: client.certChainPem }),
        },
        () => {
          s.destroy();
          resolve();
        },
      );
      s.on('error', reject);
    });
  }
  const perSec = count / ((performance.now() - t0) / 1000);
  await new Promise((r) => tlsServer.close(r));
  return perSec;
}

async function benchHandshakes(ctx: BenchContext, count: number): Promise<void> {
  const root = await createRootCA({ clusterId: 'bench', nowMs: Date.now() });
  const server = await nodeMaterial(root, { role: 'manager' });
  const client = await nodeMaterial(root, { role: 'worker' });
  await handshakesPerSec(server, client, Math.min(20, count)); // warm-up
  const mtls = await handshakesPerSec(server, client, count);
  const serverOnly = await handshakesPerSec(server, undefined, count);
  ctx.report({ metric: 'mTLS handshakes (TLS 1.3, ECDSA P-256)', value: mtls, unit: '/s', n: count });
  ctx.report({
    metric: 'reference: server-only TLS 1.3 handshakes',
    value: serverOnly,
    unit: '/s',
    n: count,
  });
  ctx.report({ metric: 'mTLS / server-only', value: mtls / serverOnly, unit: 'ratio' });
}

async function meanCallLatencyMs(
  material: TlsMaterial,
  peer: TlsMaterial,
  withAuthz: boolean,
  count: number,
): Promise<number> {
  const interceptors = withAuthz
    ? [createAuthorizationInterceptor({ clusterId: 'bench', policy: servicePolicy(echoService, echoAccess) })]
    : [];
  const server = new grpc.Server({ interceptors });
  server.addService(
    echoService,
    echoHandlers((call) => callerIdentity(call)?.nodeId ?? null),
  );
  const port = await bindSecure(server, '127.0.0.1:0', new ReloadableServerCredentials(material));
  const client = new EchoClient(
    `127.0.0.1:${port}`,
    createChannelCredentials(peer, { clusterId: 'bench' }),
    SECURE_CHANNEL_OPTIONS,
  );
  try {
    for (let i = 0; i < 100; i++) await unaryCall(client, 'echo', { i }); // warm-up
    const t0 = performance.now();
    for (let i = 0; i < count; i++) await unaryCall(client, 'echo', { i });
    return (performance.now() - t0) / count;
  } finally {
    client.close();
    server.forceShutdown();
  }
}

async function benchAuthorization(ctx: BenchContext, count: number): Promise<void> {
  const root = await createRootCA({ clusterId: 'bench', nowMs: Date.now() });
  const server = await nodeMaterial(root, { role: 'manager' });
  const client = await nodeMaterial(root, { role: 'worker' });
  // Interleave rounds so machine load hits both sides alike.
  let plainMs = 0;
  let authzMs = 0;
  const rounds = 3;
  for (let r = 0; r < rounds; r++) {
    plainMs += await meanCallLatencyMs(server, client, false, count);
    authzMs += await meanCallLatencyMs(server, client, true, count);
  }
  plainMs /= rounds;
  authzMs /= rounds;
  ctx.report({
    metric: 'unary call with authorization',
    value: authzMs * 1000,
    unit: 'µs',
    n: count * rounds,
  });
  ctx.report({
    metric: 'reference: same call without it',
    value: plainMs * 1000,
    unit: 'µs',
    n: count * rounds,
  });
  ctx.report({ metric: 'with / without authorization', value: authzMs / plainMs, unit: 'ratio' });
}

const bench: Benchmark = {
  description: 'PKI: certificate issuance, mTLS handshakes, per-call authorization overhead',
  async run(ctx) {
    const certs = intFlag(ctx, 'certs', 300);
    const handshakes = intFlag(ctx, 'handshakes', 300);
    const calls = intFlag(ctx, 'calls', 1000);
    ctx.log(`issuing ${certs} certificates...`);
    await benchIssuance(ctx, certs);
    ctx.log(`${handshakes} handshakes each way...`);
    await benchHandshakes(ctx, handshakes);
    ctx.log(`${calls} unary calls x 3 rounds, with and without authorization...`);
    await benchAuthorization(ctx, calls);
  },
};

export default bench;
