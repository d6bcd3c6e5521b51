import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createRootCA } from '../../../controlplane/ca/authority.js';
import { CertificateAuthority } from '../../../controlplane/ca/certificate-authority.js';
import { parseJoinToken } from '../../../controlplane/ca/join-token.js';
import { createKeyAndCsr } from '../../../controlplane/ca/node-identity.js';
import { certificateDigest } from '../../../controlplane/ca/x509.js';
import { systemClock } from '../../../src/common/clock.js';
import {
  createAuthorizationInterceptor,
  servicePolicy,
} from '../../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
  SECURE_CHANNEL_OPTIONS,
  type TlsMaterial,
} from '../../../src/common/transport/credentials.js';
import { EchoClient, echoAccess, echoHandlers, echoService, unaryCall } from '../transport/fixtures.js';

const NODES = 3;
const CLUSTER = 'rotate';
const children: ChildProcess[] = [];

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Reply {
  type: string;
  port?: number;
  ok?: number;
  freshOk?: number;
  failures?: string[];
  message?: string;
}

function request(child: ChildProcess, msg: object, want: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${want}" from node process within 20 s`)), 20_000);
    const onMessage = (m: unknown) => {
      const reply = m as Reply;
      if (reply.type === 'error') reject(new Error(reply.message));
      if (reply.type !== want) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(reply);
    };
    child.on('message', onMessage);
    child.send(msg);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until every node has completed at least `calls` more successful calls
 * to its peers (on kept and on fresh channels) than at the last checkpoint,
 * so traffic demonstrably flows in every phase of the rotation.
 */
async function trafficCheckpoint(
  phase: string,
  last: number[],
  lastFresh: number[],
  calls = 4,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (const [i, child] of children.entries()) {
    for (;;) {
      const s = await request(child, { type: 'stats' }, 'stats');
      assert.deepEqual(s.failures, [], `${phase}: node ${i} saw failed calls`);
      if ((s.ok ?? 0) >= (last[i] ?? 0) + calls && (s.freshOk ?? 0) >= (lastFresh[i] ?? 0) + 1) {
        last[i] = s.ok ?? 0;
        lastFresh[i] = s.freshOk ?? 0;
        break;
      }
      assert.ok(Date.now() < deadline, `${phase}: node ${i} made no progress (${s.ok} calls)`);
      await sleep(50);
    }
  }
}

test('root rotation across 3 processes: cross-signed transition, batches, retirement, and no failed call between live nodes', async () => {
  const ca = new CertificateAuthority({
    root: await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() }),
    clock: systemClock,
  });
  const oldRootPem = ca.rootCertificatePem();
  const nodes: { nodeId: string; material: TlsMaterial }[] = [];
  for (let i = 0; i < NODES; i++) {
    const { csrPem, privateKeyPem } = await createKeyAndCsr();
    const issued = await ca.issueForJoinToken(ca.joinTokens().manager, csrPem, ['127.0.0.1']);
    nodes.push({
      nodeId: issued.nodeId,
      material: { privateKeyPem, certChainPem: issued.certChainPem, trustBundlePem: ca.trustBundlePem() },
    });
  }
  const ports: number[] = [];
  for (const node of nodes) {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', new URL('./rotation-node.ts', import.meta.url).pathname],
      {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        env: { ...process.env, MESHD_TEST: '1' },
      },
    );
    children.push(child);
    const reply = await request(child, { type: 'init', clusterId: CLUSTER, material: node.material }, 'port');
    ports.push(reply.port!);
  }
  for (const [i, child] of children.entries())
    await request(child, { type: 'peers', ports: ports.filter((_, j) => j !== i) }, 'ack');
  const ok: number[] = [];
  const fresh: number[] = [];
  await trafficCheckpoint('before the rotation', ok, fresh);

  // 1. Nodes learn to trust both roots (still with their old certificates).
  // Node 2 is a straggler that misses this update: until its own re-issue it
  // trusts only the old root, so it must accept the new leaves of nodes 0 and
  // 1 through the cross-signed certificate they present.
  await ca.startRootRotation(await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() }));
  for (const [i, child] of children.entries()) {
    if (i === 2) continue;
    nodes[i]!.material = { ...nodes[i]!.material, trustBundlePem: ca.trustBundlePem() };
    await request(child, { type: 'update', material: nodes[i]!.material }, 'ack');
  }
  await trafficCheckpoint('trusting both roots', ok, fresh);

  // 2. Re-issue in batches: leaves from the new key, presented with the cross-signed root.
  for (const batch of [[0], [1, 2]]) {
    for (const i of batch) {
      const { csrPem, privateKeyPem } = await createKeyAndCsr();
      const issued = await ca.renew(
        { nodeId: nodes[i]!.nodeId, role: 'manager', clusterId: CLUSTER },
        csrPem,
        ['127.0.0.1'],
      );
      nodes[i]!.material = {
        privateKeyPem,
        certChainPem: issued.certChainPem,
        trustBundlePem: ca.trustBundlePem(),
      };
      await request(children[i]!, { type: 'update', material: nodes[i]!.material }, 'ack');
    }
    await trafficCheckpoint(`after re-issuing batch ${batch.join(',')}`, ok, fresh);
  }
  assert.deepEqual(ca.nodesPendingRotation(), []);

  // 3. Retire the old root.
  await ca.finishRootRotation();
  assert.notEqual(ca.rootCertificatePem(), oldRootPem);
  for (const [i, child] of children.entries()) {
    nodes[i]!.material = { ...nodes[i]!.material, trustBundlePem: ca.trustBundlePem() };
    await request(child, { type: 'update', material: nodes[i]!.material }, 'ack');
  }
  await trafficCheckpoint('after retiring the old root', ok, fresh);
  for (const child of children) child.send({ type: 'stop' });
  // Join tokens now pin the new root.
  assert.equal(
    parseJoinToken(ca.joinTokens().worker).rootDigestHex,
    certificateDigest(ca.rootCertificatePem()),
  );
});

test('rotation batches: only batchSize pending nodes are told to renew at a time, in a stable order', async () => {
  const ca = new CertificateAuthority({
    root: await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() }),
    clock: systemClock,
  });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const { csrPem } = await createKeyAndCsr();
    ids.push((await ca.issueForJoinToken(ca.joinTokens().worker, csrPem, [])).nodeId);
  }
  await assert.rejects(
    ca.startRootRotation(await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() }), 0),
    /batchSize must be an integer >= 1/,
  );
  await ca.startRootRotation(await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() }), 2);
  const told = () => ids.filter((id) => ca.status(id).state === 'renew').sort();
  const sorted = [...ids].sort();
  let renewed = 0;
  while (ca.nodesPendingRotation().length > 0) {
    const batch = told();
    assert.deepEqual(batch, sorted.slice(renewed, renewed + 2));
    const { csrPem } = await createKeyAndCsr();
    await ca.renew({ nodeId: batch[0]!, role: 'worker', clusterId: CLUSTER }, csrPem, []);
    renewed++;
  }
  assert.deepEqual(told(), []);
  await ca.finishRootRotation();
});

test('after retirement a node still holding an old-root certificate is refused', async () => {
  const ca = new CertificateAuthority({
    root: await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() }),
    clock: systemClock,
  });
  const issue = async () => {
    const { csrPem, privateKeyPem } = await createKeyAndCsr();
    const issued = await ca.issueForJoinToken(ca.joinTokens().manager, csrPem, ['127.0.0.1']);
    return {
      nodeId: issued.nodeId,
      material: { privateKeyPem, certChainPem: issued.certChainPem, trustBundlePem: ca.trustBundlePem() },
    };
  };
  const left = await issue();
  const server = await issue();
  await ca.startRootRotation(await createRootCA({ clusterId: CLUSTER, nowMs: Date.now() }));
  await assert.rejects(ca.finishRootRotation(), /2 node\(s\) still hold certificates from it/);
  await ca.removeNode(left.nodeId); // the node that was off and never re-issued
  const { csrPem, privateKeyPem } = await createKeyAndCsr();
  const renewed = await ca.renew({ nodeId: server.nodeId, role: 'manager', clusterId: CLUSTER }, csrPem, [
    '127.0.0.1',
  ]);
  await ca.finishRootRotation();
  const serverMaterial = {
    privateKeyPem,
    certChainPem: renewed.certChainPem,
    trustBundlePem: ca.trustBundlePem(),
  };
  const grpcServer = new grpc.Server({
    interceptors: [
      createAuthorizationInterceptor({ clusterId: CLUSTER, policy: servicePolicy(echoService, echoAccess) }),
    ],
  });
  grpcServer.addService(
    echoService,
    echoHandlers(() => null),
  );
  const port = await bindSecure(grpcServer, '127.0.0.1:0', new ReloadableServerCredentials(serverMaterial));
  const client = new EchoClient(
    `127.0.0.1:${port}`,
    createChannelCredentials(left.material, { clusterId: CLUSTER }),
    SECURE_CHANNEL_OPTIONS,
  );
  try {
    await assert.rejects(
      unaryCall(client, 'echo', {}),
      (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE,
    );
  } finally {
    client.close();
    grpcServer.forceShutdown();
  }
});
