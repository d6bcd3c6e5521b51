import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { createRootCA, HOUR_MS } from '../../../controlplane/ca/authority.js';
import type { NodeCertificate } from '../../../controlplane/ca/ca-client.js';
import { createCaServer } from '../../../controlplane/ca/ca-service.js';
import { CertificateAuthority } from '../../../controlplane/ca/certificate-authority.js';
import { NodeCertificateKeeper } from '../../../controlplane/ca/node-certificate-keeper.js';
import { createKeyAndCsr } from '../../../controlplane/ca/node-identity.js';
import { x509 } from '../../../controlplane/ca/x509.js';
import { ManualClock } from '../../../src/common/clock.js';
import { SeededRng } from '../../../src/common/rng.js';
import { bindSecure, ReloadableServerCredentials } from '../../../src/common/transport/credentials.js';

function servedSerial(port: number, trust: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(
      { host: '127.0.0.1', port, ca: trust, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined },
      () => {
        resolve(s.getPeerCertificate().serialNumber.toLowerCase());
        s.destroy();
      },
    );
    s.on('error', reject);
  });
}

describe('node certificate keeper', () => {
  const clock = new ManualClock(Date.now());
  let dir: string;
  let ca: CertificateAuthority;
  let caServer: grpc.Server;
  let target: string;

  async function newNode(role: 'manager' | 'worker'): Promise<NodeCertificate> {
    const { csrPem, privateKeyPem } = await createKeyAndCsr();
    const token = role === 'manager' ? ca.joinTokens().manager : ca.joinTokens().worker;
    const issued = await ca.issueForJoinToken(token, csrPem, ['127.0.0.1']);
    return {
      nodeId: issued.nodeId,
      role,
      clusterId: 'keep',
      notAfterMs: issued.notAfterMs,
      material: { privateKeyPem, certChainPem: issued.certChainPem, trustBundlePem: ca.trustBundlePem() },
    };
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-keeper-'));
    ca = new CertificateAuthority({
      root: await createRootCA({ clusterId: 'keep', nowMs: clock.nowMs() }),
      clock,
      lifetimeMs: HOUR_MS,
    });
    const self = await newNode('manager');
    caServer = createCaServer(ca, { clock });
    const creds = new ReloadableServerCredentials(self.material, { acceptClientsWithoutCertificate: true });
    target = `127.0.0.1:${await bindSecure(caServer, '127.0.0.1:0', creds)}`;
  });

  after(() => {
    caServer.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  test('on schedule it renews, saves the key 0600, reloads its server and tells listeners', async () => {
    const node = await newNode('worker');
    const keeper = new NodeCertificateKeeper({
      current: node,
      stateDir: join(dir, 'a'),
      managerTarget: () => target,
      addresses: ['127.0.0.1'],
      clock,
      rng: new SeededRng(3),
    });
    const server = new grpc.Server();
    const port = await bindSecure(server, '127.0.0.1:0', keeper.serverCredentials);
    const renewed: string[] = [];
    keeper.onRenewed((n) => renewed.push(n.nodeId));
    keeper.start();
    try {
      for (let minute = 0; minute < 60 && renewed.length === 0; minute++) {
        clock.advance(60_000);
        await keeper.settled();
      }
      assert.deepEqual(renewed, [node.nodeId]);
      const onDisk = readFileSync(join(dir, 'a', 'node.crt'), 'utf8');
      assert.equal(onDisk, keeper.current().material.certChainPem);
      assert.equal(statSync(join(dir, 'a', 'node.key')).mode & 0o777, 0o600);
      const serial = new x509.X509Certificate(
        keeper.current().material.certChainPem,
      ).serialNumber.toLowerCase();
      assert.equal(await servedSerial(port, ca.trustBundlePem()), serial);
    } finally {
      keeper.stop();
      server.forceShutdown();
    }
  });

  test('a role change makes it renew at once with the new role; removal stops it', async () => {
    const node = await newNode('worker');
    const keeper = new NodeCertificateKeeper({
      current: node,
      stateDir: join(dir, 'b'),
      managerTarget: () => target,
      addresses: [],
      clock,
      rng: new SeededRng(4),
    });
    keeper.start();
    try {
      assert.equal(await keeper.checkStatus(), 'current');
      await ca.setRole(node.nodeId, 'manager');
      assert.equal(await keeper.checkStatus(), 'renewed');
      assert.equal(keeper.current().role, 'manager');
      assert.equal(await keeper.checkStatus(), 'current');
      await ca.removeNode(node.nodeId);
      assert.equal(await keeper.checkStatus(), 'removed');
    } finally {
      keeper.stop();
    }
  });

  test('during a root rotation it renews when its batch comes, and drops the old root once retired', async () => {
    const node = await newNode('worker');
    const keeper = new NodeCertificateKeeper({
      current: node,
      stateDir: join(dir, 'c'),
      managerTarget: () => target,
      addresses: [],
      clock,
      rng: new SeededRng(5),
    });
    keeper.start();
    try {
      const oldRoot = ca.rootCertificatePem();
      await ca.startRootRotation(await createRootCA({ clusterId: 'keep', nowMs: clock.nowMs() }), 1000);
      assert.equal(await keeper.checkStatus(), 'renewed');
      assert.ok(
        keeper.current().material.trustBundlePem.includes(oldRoot.trim()),
        'both roots trusted meanwhile',
      );
      // The other nodes of this CA re-issue too (here directly), then the old root retires.
      for (const nodeId of ca.nodesPendingRotation()) {
        const { csrPem } = await createKeyAndCsr();
        const status = ca.status(nodeId);
        const role = status.state === 'current' || status.state === 'renew' ? status.record.role : 'worker';
        await ca.renew({ nodeId, role, clusterId: 'keep' }, csrPem, []);
      }
      await ca.finishRootRotation();
      assert.equal(await keeper.checkStatus(), 'trust-updated');
      assert.equal(keeper.current().material.trustBundlePem, ca.trustBundlePem());
      assert.ok(!keeper.current().material.trustBundlePem.includes(oldRoot.trim()));
      assert.equal(readFileSync(join(dir, 'c', 'ca.crt'), 'utf8'), ca.trustBundlePem());
    } finally {
      keeper.stop();
    }
  });
});
