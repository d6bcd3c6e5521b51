import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { createRootCA, HOUR_MS, type RootCA } from '../../../controlplane/ca/authority.js';
import {
  callerIdentity,
  createAuthorizationInterceptor,
  JOIN_TOKEN_METADATA_KEY,
  servicePolicy,
} from '../../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  createJoinChannelCredentials,
  ReloadableServerCredentials,
  SECURE_CHANNEL_OPTIONS,
  type TlsMaterial,
} from '../../../src/common/transport/credentials.js';
import { EchoClient, echoAccess, echoHandlers, echoService, nodeMaterial, unaryCall } from './fixtures.js';

const CLUSTER = 'cluster-a';
const TOKEN = 'MESHTKN-1-test-token';

function run(cmd: string, args: string[], input?: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 10_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
    child.stdin?.end(input ?? '');
  });
}

describe('secure transport', () => {
  let root: RootCA;
  let manager: TlsMaterial & { nodeId: string };
  let worker: TlsMaterial & { nodeId: string };
  let server: grpc.Server;
  let strictServer: grpc.Server;
  let creds: ReloadableServerCredentials;
  let port: number;
  let strictPort: number;
  const denied = new Set<string>();
  let dir: string;
  const clients: grpc.Client[] = [];

  function client(material: TlsMaterial, p = port): grpc.Client {
    const c = new EchoClient(
      `127.0.0.1:${p}`,
      createChannelCredentials(material, { clusterId: CLUSTER }),
      SECURE_CHANNEL_OPTIONS,
    );
    clients.push(c);
    return c;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-transport-'));
    root = await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() });
    manager = await nodeMaterial(root, { role: 'manager' });
    worker = await nodeMaterial(root, { role: 'worker' });
    const authz = {
      clusterId: CLUSTER,
      policy: servicePolicy(echoService, echoAccess),
      isDenied: (id: string) => denied.has(id),
      isValidJoinToken: (t: string) => t === TOKEN,
    };
    server = new grpc.Server({ interceptors: [createAuthorizationInterceptor(authz)] });
    server.addService(
      echoService,
      echoHandlers((call) => callerIdentity(call) ?? null),
    );
    creds = new ReloadableServerCredentials(manager, { acceptClientsWithoutCertificate: true });
    port = await bindSecure(server, '127.0.0.1:0', creds);
    strictServer = new grpc.Server({ interceptors: [createAuthorizationInterceptor(authz)] });
    strictServer.addService(
      echoService,
      echoHandlers((call) => callerIdentity(call) ?? null),
    );
    strictPort = await bindSecure(strictServer, '127.0.0.1:0', new ReloadableServerCredentials(manager));
  });

  after(() => {
    for (const c of clients) c.close();
    server.forceShutdown();
    strictServer.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a node of the cluster calls a node method and the handler sees its CN, OU and O', async () => {
    const res = await unaryCall(client(worker), 'echo', { x: 1 });
    assert.deepEqual(res['caller'], { nodeId: worker.nodeId, role: 'worker', clusterId: CLUSTER });
  });

  test('only TLS 1.3 is negotiated; a TLS 1.2 client is refused', async () => {
    const version = await new Promise<string | null>((resolve, reject) => {
      const s = connect(
        {
          host: '127.0.0.1',
          port: strictPort,
          ca: manager.trustBundlePem,
          key: worker.privateKeyPem,
          cert: worker.certChainPem,
          ALPNProtocols: ['h2'],
          checkServerIdentity: () => undefined,
        },
        () => {
          resolve(s.getProtocol());
          s.destroy();
        },
      );
      s.on('error', reject);
    });
    assert.equal(version, 'TLSv1.3');
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = connect(
          { host: '127.0.0.1', port: strictPort, maxVersion: 'TLSv1.2', rejectUnauthorized: false },
          () => resolve(s),
        );
        s.on('error', reject);
      }),
      /version|protocol/i,
    );
  });

  test('openssl s_client completes the handshake with a node certificate and fails without one', async () => {
    writeFileSync(join(dir, 'ca.crt'), root.certPem);
    writeFileSync(join(dir, 'w.crt'), worker.certChainPem);
    writeFileSync(join(dir, 'w.key'), worker.privateKeyPem, { mode: 0o600 });
    const base = [
      's_client',
      '-connect',
      `127.0.0.1:${strictPort}`,
      '-CAfile',
      join(dir, 'ca.crt'),
      '-alpn',
      'h2',
      '-verify_return_error',
    ];
    const ok = await run(
      'openssl',
      [...base, '-cert', join(dir, 'w.crt'), '-key', join(dir, 'w.key')],
      'Q\n',
    );
    assert.match(ok.out, /TLSv1\.3/);
    assert.match(ok.out, /Verify return code: 0 \(ok\)/);
    assert.doesNotMatch(ok.out, /alert/i);
    // -ign_eof keeps s_client reading until the server closes, so it sees the alert.
    const noCert = await run('openssl', [...base, '-ign_eof'], '');
    // TLS 1.3 reports the missing client certificate after the handshake, as an alert.
    assert.match(noCert.out, /alert certificate required|alert handshake failure/i);
    assert.notEqual(noCert.code, 0);
  });

  test('a worker calling a manager-only method is refused with PERMISSION_DENIED naming its role', async () => {
    await assert.rejects(unaryCall(client(worker), 'admin', {}), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.PERMISSION_DENIED);
      assert.match(err.details, /is a worker; only managers/);
      return true;
    });
    const res = await unaryCall(client(manager), 'admin', {});
    assert.equal((res['caller'] as { role: string }).role, 'manager');
  });

  test('a caller without a client certificate is refused with a message that says so', async () => {
    const c = new EchoClient(
      `127.0.0.1:${port}`,
      createJoinChannelCredentials(root.certPem, { clusterId: CLUSTER }),
      SECURE_CHANNEL_OPTIONS,
    );
    clients.push(c);
    await assert.rejects(unaryCall(c, 'echo', {}), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.match(err.details, /no client certificate was presented/);
      return true;
    });
    // ...but the public method and the join method with a valid token work.
    assert.equal((await unaryCall(c, 'hello', { a: 1 }))['a'], 1);
    const md = new grpc.Metadata();
    md.set(JOIN_TOKEN_METADATA_KEY, TOKEN);
    assert.equal((await unaryCall(c, 'join', { a: 2 }, md))['a'], 2);
    const bad = new grpc.Metadata();
    bad.set(JOIN_TOKEN_METADATA_KEY, 'MESHTKN-1-wrong');
    await assert.rejects(unaryCall(c, 'join', {}, bad), /join token is wrong, expired or was rotated out/);
  });

  test("a certificate from another cluster's CA is refused", async () => {
    const other = await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() });
    const stranger = await nodeMaterial(other, { role: 'manager', trust: root.certPem });
    await assert.rejects(unaryCall(client(stranger), 'echo', {}), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.match(err.details, /not signed by this cluster's root CA/);
      return true;
    });
    // The strict listener refuses it in the handshake.
    await assert.rejects(unaryCall(client(stranger, strictPort), 'echo', {}), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAVAILABLE);
      return true;
    });
  });

  test('expired and not-yet-valid certificates are refused, each named', async () => {
    const expired = await nodeMaterial(root, {
      role: 'worker',
      nowMs: Date.now() - 3 * HOUR_MS,
      lifetimeMs: HOUR_MS,
    });
    await assert.rejects(unaryCall(client(expired), 'echo', {}), /the client certificate has expired/);
    const future = await nodeMaterial(root, { role: 'worker', nowMs: Date.now() + 3 * HOUR_MS });
    await assert.rejects(unaryCall(client(future), 'echo', {}), /the client certificate is not valid yet/);
  });

  test('a denylisted node is refused even with a valid certificate', async () => {
    const removed = await nodeMaterial(root, { role: 'manager' });
    const c = client(removed);
    await unaryCall(c, 'echo', {});
    denied.add(removed.nodeId);
    await assert.rejects(unaryCall(c, 'echo', {}), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.PERMISSION_DENIED);
      assert.match(err.details, new RegExp(`node ${removed.nodeId} was removed from the cluster`));
      return true;
    });
  });

  test('a client refuses a server whose certificate names another cluster', async () => {
    const c = new EchoClient(
      `127.0.0.1:${port}`,
      createChannelCredentials(worker, { clusterId: 'cluster-b' }),
      SECURE_CHANNEL_OPTIONS,
    );
    clients.push(c);
    await assert.rejects(unaryCall(c, 'echo', {}), /expected cluster "cluster-b"/);
  });

  test('reloading server credentials keeps a live stream and new handshakes see the new certificate', async () => {
    const c = client(worker);
    const stream = (c as unknown as Record<string, (r: object) => grpc.ClientReadableStream<{ n: number }>>)[
      'watch'
    ]!({ intervalMs: 10 });
    let received = 0;
    let streamError: Error | undefined;
    stream.on('data', () => received++);
    stream.on('error', (e: Error) => {
      streamError = e;
    });
    await new Promise((r) => setTimeout(r, 80));
    const renewed = await nodeMaterial(root, { role: 'manager', nodeId: manager.nodeId });
    creds.reload(renewed);
    const before = received;
    await new Promise((r) => setTimeout(r, 80));
    assert.ok(received > before, 'the stream kept flowing after the reload');
    const served = await new Promise<string>((resolve, reject) => {
      const s = connect(
        {
          host: '127.0.0.1',
          port,
          ca: root.certPem,
          key: worker.privateKeyPem,
          cert: worker.certChainPem,
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
    const { x509 } = await import('../../../controlplane/ca/x509.js');
    assert.equal(
      served.toLowerCase(),
      new x509.X509Certificate(renewed.certChainPem).serialNumber.toLowerCase(),
    );
    stream.cancel();
    assert.equal(streamError === undefined || /Cancelled/.test(streamError.message), true);
  });

  test('a reload with unusable material is refused and the server keeps serving with the old one', async () => {
    const renewed = await nodeMaterial(root, { role: 'manager', nodeId: manager.nodeId });
    assert.throws(() => creds.reload({ ...renewed, privateKeyPem: 'not a key' }));
    const res = await unaryCall(client(worker), 'echo', { after: 'bad reload' });
    assert.equal(res['after'], 'bad reload');
  });
});
