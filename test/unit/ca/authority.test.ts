import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  BACKDATE_MS,
  createRootCA,
  crossSign,
  DAY_MS,
  HOUR_MS,
  issueNodeCertificate,
  loadRootCA,
  loadRootCAFromDir,
  ROOT_LIFETIME_MS,
  type RootCA,
  saveRootCA,
} from '../../../controlplane/ca/authority.js';
import {
  createKeyAndCsr,
  loadNodeTlsMaterial,
  saveNodeTlsMaterial,
} from '../../../controlplane/ca/node-identity.js';
import { generateKeyPair, splitPemBundle, x509 } from '../../../controlplane/ca/x509.js';

function openssl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('openssl', args, { timeout: 10_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? 1 : 0, out: stdout + stderr }),
    );
  });
}

describe('root CA and node certificates', () => {
  let root: RootCA;
  let dir: string;
  const nowMs = Date.now();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-ca-'));
    root = await createRootCA({ clusterId: 'clusterx', nowMs });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the root CA is a self-signed ECDSA P-256 CA valid for 20 years', async () => {
    const cert = new x509.X509Certificate(root.certPem);
    assert.equal(await cert.isSelfSigned(), true);
    assert.equal(cert.notAfter.getTime(), Math.floor((nowMs + ROOT_LIFETIME_MS) / 1000) * 1000);
    assert.deepEqual(
      {
        name: cert.publicKey.algorithm.name,
        curve: (cert.publicKey.algorithm as { namedCurve: string }).namedCurve,
      },
      { name: 'ECDSA', curve: 'P-256' },
    );
    const reloaded = await loadRootCA(root.certPem, root.privateKeyPem);
    assert.equal(reloaded.clusterId, 'clusterx');
    assert.equal(reloaded.digestHex, root.digestHex);
  });

  test('an issued certificate verifies with openssl and carries the subject the CA chose, not the CSR', async () => {
    const { csrPem } = await createKeyAndCsr();
    const issued = await issueNodeCertificate(root, {
      csrPem,
      nodeId: 'node1abc',
      role: 'worker',
      clusterId: 'clusterx',
      addresses: ['10.0.0.7', 'host-a.example'],
      nowMs,
    });
    writeFileSync(join(dir, 'root.crt'), root.certPem);
    writeFileSync(join(dir, 'node.crt'), issued.certChainPem);
    const verify = await openssl(['verify', '-CAfile', join(dir, 'root.crt'), join(dir, 'node.crt')]);
    assert.equal(verify.code, 0, verify.out);
    assert.match(verify.out, /node\.crt: OK/);
    const subject = await openssl(['x509', '-noout', '-subject', '-in', join(dir, 'node.crt')]);
    assert.equal(subject.out.trim(), 'subject=O = clusterx, OU = meshd-worker, CN = node1abc');
    const text = await openssl([
      'x509',
      '-noout',
      '-ext',
      'subjectAltName,extendedKeyUsage',
      '-in',
      join(dir, 'node.crt'),
    ]);
    assert.match(text.out, /IP Address:10\.0\.0\.7/);
    assert.match(text.out, /DNS:host-a\.example/);
    assert.match(text.out, /TLS Web Server Authentication, TLS Web Client Authentication/);
  });

  test('node certificates last 90 days by default and are backdated 1 hour', async () => {
    const { csrPem } = await createKeyAndCsr();
    const issued = await issueNodeCertificate(root, {
      csrPem,
      nodeId: 'n2',
      role: 'manager',
      clusterId: 'clusterx',
      addresses: [],
      nowMs,
    });
    assert.equal(issued.notBeforeMs, nowMs - BACKDATE_MS);
    assert.equal(issued.notAfterMs, nowMs + 90 * DAY_MS);
  });

  test('a lifetime under 1 hour, a bad CSR and a bad address are refused with the field named', async () => {
    const { csrPem } = await createKeyAndCsr();
    const base = {
      csrPem,
      nodeId: 'n3',
      role: 'worker' as const,
      clusterId: 'clusterx',
      addresses: [],
      nowMs,
    };
    await assert.rejects(
      issueNodeCertificate(root, { ...base, lifetimeMs: HOUR_MS - 1 }),
      /lifetimeMs must be an integer >= 3600000/,
    );
    await assert.rejects(
      issueNodeCertificate(root, { ...base, csrPem: 'garbage' }),
      /csr: expected a PEM PKCS#10/,
    );
    await assert.rejects(
      issueNodeCertificate(root, { ...base, addresses: ['bad address!'] }),
      /addresses\[0\]: expected an IP or DNS name/,
    );
    await assert.rejects(
      issueNodeCertificate(root, { ...base, nodeId: 'a b' }),
      /nodeId must be 1-64 characters/,
    );
  });

  test('a CSR whose signature does not match its key is refused', async () => {
    const { keys } = await generateKeyPair();
    const other = await generateKeyPair();
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=x',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    // Splice the other key into the CSR: the self-signature no longer verifies.
    const forged = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=x',
      keys: { publicKey: other.keys.publicKey, privateKey: keys.privateKey },
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    assert.ok(csr);
    await assert.rejects(
      issueNodeCertificate(root, {
        csrPem: forged.toString('pem'),
        nodeId: 'n4',
        role: 'worker',
        clusterId: 'clusterx',
        addresses: [],
        nowMs,
      }),
      /csr: signature does not verify/,
    );
  });

  test('a leaf signed by a new root verifies through the cross-signed certificate against the old root', async () => {
    const newRoot = await createRootCA({ clusterId: 'clusterx', nowMs });
    const cross = await crossSign(root, newRoot, nowMs);
    const { csrPem } = await createKeyAndCsr();
    const issued = await issueNodeCertificate(
      { ...newRoot, chainPem: cross },
      { csrPem, nodeId: 'n5', role: 'worker', clusterId: 'clusterx', addresses: [], nowMs },
    );
    const [leaf, intermediate] = splitPemBundle(issued.certChainPem);
    writeFileSync(join(dir, 'old.crt'), root.certPem);
    writeFileSync(join(dir, 'new.crt'), newRoot.certPem);
    writeFileSync(join(dir, 'leaf.crt'), leaf!);
    writeFileSync(join(dir, 'cross.crt'), intermediate!);
    const viaOld = await openssl([
      'verify',
      '-CAfile',
      join(dir, 'old.crt'),
      '-untrusted',
      join(dir, 'cross.crt'),
      join(dir, 'leaf.crt'),
    ]);
    assert.equal(viaOld.code, 0, viaOld.out);
    const viaNew = await openssl(['verify', '-CAfile', join(dir, 'new.crt'), join(dir, 'leaf.crt')]);
    assert.equal(viaNew.code, 0, viaNew.out);
  });

  test('the root CA is saved with its key at mode 0600 and loads back', async () => {
    saveRootCA(join(dir, 'ca'), root);
    assert.equal(statSync(join(dir, 'ca', 'root.key')).mode & 0o777, 0o600);
    const loaded = await loadRootCAFromDir(join(dir, 'ca'));
    assert.equal(loaded.digestHex, root.digestHex);
    assert.equal(loaded.privateKeyPem, root.privateKeyPem);
  });

  test('node TLS files are written with the key at mode 0600', async () => {
    const { privateKeyPem, csrPem } = await createKeyAndCsr();
    const issued = await issueNodeCertificate(root, {
      csrPem,
      nodeId: 'n6',
      role: 'worker',
      clusterId: 'clusterx',
      addresses: [],
      nowMs,
    });
    const material = { privateKeyPem, certChainPem: issued.certChainPem, trustBundlePem: root.certPem };
    saveNodeTlsMaterial(join(dir, 'state'), material);
    assert.equal(statSync(join(dir, 'state', 'node.key')).mode & 0o777, 0o600);
    assert.deepEqual(loadNodeTlsMaterial(join(dir, 'state')), material);
  });
});
