import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createRootCA, HOUR_MS, type RootCA } from '../../../controlplane/ca/authority.js';
import {
  joinCluster,
  type NodeCertificate,
  renewNodeCertificate,
} from '../../../controlplane/ca/ca-client.js';
import { createCaServer } from '../../../controlplane/ca/ca-service.js';
import { CertificateAuthority } from '../../../controlplane/ca/certificate-authority.js';
import { newJoinToken } from '../../../controlplane/ca/join-token.js';
import { createKeyAndCsr } from '../../../controlplane/ca/node-identity.js';
import { CAServiceClient, CertificateState } from '../../../src/api/gen/meshd/v1/ca.js';
import { NodeRole } from '../../../src/api/gen/meshd/v1/objects.js';
import { systemClock } from '../../../src/common/clock.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
  SECURE_CHANNEL_OPTIONS,
} from '../../../src/common/transport/credentials.js';
import { nodeMaterial } from '../transport/fixtures.js';

function rpc<Res>(invoke: (cb: (err: grpc.ServiceError | null, res: Res) => void) => void): Promise<Res> {
  return new Promise((resolve, reject) => invoke((err, res) => (err ? reject(err) : resolve(res))));
}

describe('CA service', () => {
  let root: RootCA;
  let ca: CertificateAuthority;
  let server: grpc.Server;
  let target: string;
  const clients: grpc.Client[] = [];

  function clientFor(node: NodeCertificate): CAServiceClient {
    const c = new CAServiceClient(
      target,
      createChannelCredentials(node.material, { clusterId: node.clusterId }),
      SECURE_CHANNEL_OPTIONS,
    );
    clients.push(c);
    return c;
  }

  before(async () => {
    root = await createRootCA({ clusterId: 'ca-svc', nowMs: Date.now() });
    ca = new CertificateAuthority({ root, clock: systemClock });
    const { csrPem, privateKeyPem } = await createKeyAndCsr();
    const self = await ca.issueForJoinToken(ca.joinTokens().manager, csrPem, ['127.0.0.1']);
    server = createCaServer(ca);
    const creds = new ReloadableServerCredentials(
      { privateKeyPem, certChainPem: self.certChainPem, trustBundlePem: ca.trustBundlePem() },
      { acceptClientsWithoutCertificate: true },
    );
    target = `127.0.0.1:${await bindSecure(server, '127.0.0.1:0', creds)}`;
  });

  after(() => {
    for (const c of clients) c.close();
    server.forceShutdown();
  });

  test('a worker token yields a worker certificate and a manager token a manager certificate', async () => {
    const w = await joinCluster({ target, token: ca.joinTokens().worker, addresses: ['127.0.0.1'] });
    assert.equal(w.role, 'worker');
    assert.equal(w.clusterId, 'ca-svc');
    assert.match(w.nodeId, /^[a-z2-7]{25}$/);
    const m = await joinCluster({ target, token: ca.joinTokens().manager, addresses: [] });
    assert.equal(m.role, 'manager');
    const status = await rpc<{ state: CertificateState }>((cb) =>
      clientFor(w).nodeCertificateStatus({ nodeId: w.nodeId }, cb),
    );
    assert.equal(status.state, CertificateState.CERTIFICATE_STATE_CURRENT);
  });

  test('a wrong token and a rotated-out token are refused', async () => {
    const wrong = newJoinToken(root.digestHex);
    await assert.rejects(joinCluster({ target, token: wrong, addresses: [] }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.match(err.details, /join token is wrong, expired or was rotated out/);
      return true;
    });
    const old = ca.joinTokens().worker;
    const manager = await joinCluster({ target, token: ca.joinTokens().manager, addresses: [] });
    const fresh = await rpc<{ token: string }>((cb) =>
      clientFor(manager).rotateJoinToken({ role: NodeRole.NODE_ROLE_WORKER, expiresAt: undefined }, cb),
    );
    assert.notEqual(fresh.token, old);
    await assert.rejects(joinCluster({ target, token: old, addresses: [] }), /rotated out/);
    assert.equal((await joinCluster({ target, token: fresh.token, addresses: [] })).role, 'worker');
  });

  test('a token rotated with an expiry stops working at that time', async () => {
    const manager = await joinCluster({ target, token: ca.joinTokens().manager, addresses: [] });
    const soon = await rpc<{ token: string }>((cb) =>
      clientFor(manager).rotateJoinToken(
        { role: NodeRole.NODE_ROLE_WORKER, expiresAt: { unixMs: Date.now() - 1 } },
        cb,
      ),
    );
    try {
      await assert.rejects(joinCluster({ target, token: soon.token, addresses: [] }), /UNAUTHENTICATED/);
    } finally {
      await ca.setJoinTokenExpiry(undefined);
    }
    assert.equal((await joinCluster({ target, token: soon.token, addresses: [] })).role, 'worker');
  });

  test('an expired join token is refused', async () => {
    const token = ca.joinTokens().worker;
    await ca.setJoinTokenExpiry(Date.now() - 1);
    try {
      await assert.rejects(joinCluster({ target, token, addresses: [] }), /UNAUTHENTICATED/);
      assert.throws(() => ca.validateJoinToken(token), /join token has expired/);
    } finally {
      await ca.setJoinTokenExpiry(undefined);
    }
  });

  test('a join is refused before any secret is sent when the shown CA does not match the token digest', async () => {
    const other = await createRootCA({ clusterId: 'ca-svc', nowMs: Date.now() });
    const token = newJoinToken(other.digestHex);
    await assert.rejects(joinCluster({ target, token, addresses: [] }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'CA_DIGEST_MISMATCH');
      assert.match(err.message, /does not match the join token's digest/);
      return true;
    });
  });

  test('a bad CSR or address is refused with INVALID_ARGUMENT naming the field, and the CA keeps serving', async () => {
    const w = await joinCluster({ target, token: ca.joinTokens().worker, addresses: [] });
    await assert.rejects(
      rpc((cb) => clientFor(w).issueNodeCertificate({ csrPem: 'not a csr', addresses: [] }, cb)),
      (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.match(err.details, /csr: expected a PEM PKCS#10 certificate request/);
        return true;
      },
    );
    const { csrPem } = await createKeyAndCsr();
    await assert.rejects(
      rpc((cb) => clientFor(w).issueNodeCertificate({ csrPem, addresses: ['::bad::addr'] }, cb)),
      /addresses\[0\]: expected an IP or DNS name/,
    );
    await rpc((cb) => clientFor(w).getRootCaCertificate({}, cb));
  });

  test('a worker may not call manager-only CA methods', async () => {
    const w = await joinCluster({ target, token: ca.joinTokens().worker, addresses: [] });
    await assert.rejects(
      rpc((cb) => clientFor(w).getJoinTokens({}, cb)),
      (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.PERMISSION_DENIED);
        assert.match(err.details, /only managers may call this method/);
        return true;
      },
    );
  });

  test('renewal keeps the node ID; a role change makes status say renew and the next certificate carries the new OU', async () => {
    const w = await joinCluster({ target, token: ca.joinTokens().worker, addresses: [] });
    const renewed = await renewNodeCertificate({ target, current: w, addresses: [] });
    assert.equal(renewed.nodeId, w.nodeId);
    assert.notEqual(renewed.material.privateKeyPem, w.material.privateKeyPem);
    await ca.setRole(w.nodeId, 'manager');
    const status = await rpc<{ state: CertificateState }>((cb) =>
      clientFor(renewed).nodeCertificateStatus({ nodeId: w.nodeId }, cb),
    );
    assert.equal(status.state, CertificateState.CERTIFICATE_STATE_RENEW);
    const promoted = await renewNodeCertificate({ target, current: renewed, addresses: [] });
    assert.equal(promoted.role, 'manager');
    assert.equal(promoted.nodeId, w.nodeId);
  });

  test('a removed node is denylisted: its calls and its renewal are refused', async () => {
    const w = await joinCluster({ target, token: ca.joinTokens().worker, addresses: [] });
    const m = await joinCluster({ target, token: ca.joinTokens().manager, addresses: [] });
    await rpc((cb) => clientFor(m).removeNode({ nodeId: w.nodeId }, cb));
    await assert.rejects(
      renewNodeCertificate({ target, current: w, addresses: [] }),
      (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.PERMISSION_DENIED);
        assert.match(err.details, /was removed from the cluster/);
        return true;
      },
    );
    const status = await rpc<{ state: CertificateState }>((cb) =>
      clientFor(m).nodeCertificateStatus({ nodeId: w.nodeId }, cb),
    );
    assert.equal(status.state, CertificateState.CERTIFICATE_STATE_REMOVED);
  });

  test('a node whose certificate expired while it was off recovers with a valid join token', async () => {
    const stale = await nodeMaterial(root, {
      role: 'worker',
      nowMs: Date.now() - 3 * HOUR_MS,
      lifetimeMs: HOUR_MS,
    });
    const node: NodeCertificate = {
      nodeId: stale.nodeId,
      role: 'worker',
      clusterId: 'ca-svc',
      notAfterMs: 0,
      material: stale,
    };
    await assert.rejects(
      renewNodeCertificate({ target, current: node, addresses: [] }),
      /the client certificate has expired/,
    );
    const rejoined = await joinCluster({ target, token: ca.joinTokens().worker, addresses: [] });
    assert.equal(rejoined.role, 'worker');
    assert.ok(rejoined.notAfterMs > Date.now());
  });
});
