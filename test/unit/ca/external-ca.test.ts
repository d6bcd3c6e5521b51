import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type * as grpc from '@grpc/grpc-js';
import {
  createRootCA,
  HOUR_MS,
  loadRootCertificate,
  type RootCA,
} from '../../../controlplane/ca/authority.js';
import { joinCluster } from '../../../controlplane/ca/ca-client.js';
import { createCaServer } from '../../../controlplane/ca/ca-service.js';
import { CertificateAuthority } from '../../../controlplane/ca/certificate-authority.js';
import { CfsslSigner } from '../../../controlplane/ca/external-signer.js';
import { createKeyAndCsr } from '../../../controlplane/ca/node-identity.js';
import { certificateValidity } from '../../../controlplane/ca/renewal.js';
import { systemClock } from '../../../src/common/clock.js';
import { bindSecure, ReloadableServerCredentials } from '../../../src/common/transport/credentials.js';
import { freePort } from '../../lib/loopback-node.js';

function openssl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('openssl', args, { timeout: 10_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? 1 : 0, out: stdout + stderr }),
    );
  });
}

describe('external CA (real cfssl serve)', () => {
  let dir: string;
  let root: RootCA;
  let cfssl: ChildProcess | undefined;
  let cfsslUrl: string;
  let server: grpc.Server | undefined;
  let target: string;
  let ca: CertificateAuthority;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'meshd-cfssl-'));
    root = await createRootCA({ clusterId: 'ext', nowMs: Date.now() });
    writeFileSync(join(dir, 'root.crt'), root.certPem);
    writeFileSync(join(dir, 'root.key'), root.privateKeyPem, { mode: 0o600 });
    const usages = ['digital signature', 'key agreement', 'server auth', 'client auth'];
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        signing: { default: { expiry: '24h', usages }, profiles: { node: { expiry: '24h', usages } } },
      }),
    );
    const port = await freePort();
    cfsslUrl = `http://127.0.0.1:${port}`;
    cfssl = spawn(
      'cfssl',
      [
        'serve',
        '-address',
        '127.0.0.1',
        '-port',
        String(port),
        '-ca',
        join(dir, 'root.crt'),
        '-ca-key',
        join(dir, 'root.key'),
        '-config',
        join(dir, 'config.json'),
        '-loglevel',
        '4',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    cfssl.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await fetch(`${cfsslUrl}/api/v1/cfssl/sign`, { signal: AbortSignal.timeout(500) });
        break;
      } catch {
        if (Date.now() > deadline || cfssl.exitCode !== null)
          throw new Error(`cfssl serve did not start: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    // The managers hold the root certificate only; signing happens in cfssl.
    ca = new CertificateAuthority({
      root: loadRootCertificate(root.certPem),
      clock: systemClock,
      signer: new CfsslSigner({ url: cfsslUrl, rootCertPem: root.certPem, profile: 'node' }),
    });
    const { csrPem, privateKeyPem } = await createKeyAndCsr();
    const self = await ca.issueForJoinToken(ca.joinTokens().manager, csrPem, ['127.0.0.1']);
    server = createCaServer(ca);
    const creds = new ReloadableServerCredentials(
      { privateKeyPem, certChainPem: self.certChainPem, trustBundlePem: root.certPem },
      { acceptClientsWithoutCertificate: true },
    );
    target = `127.0.0.1:${await bindSecure(server, '127.0.0.1:0', creds)}`;
  });

  after(() => {
    server?.forceShutdown();
    if (cfssl?.pid !== undefined && cfssl.exitCode === null) cfssl.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  test('a node joins through a manager that relays its CSR to cfssl, and gets the subject the CA chose', async () => {
    const node = await joinCluster({ target, token: ca.joinTokens().worker, addresses: ['127.0.0.1'] });
    assert.equal(node.role, 'worker');
    writeFileSync(join(dir, 'node.crt'), node.material.certChainPem);
    const verify = await openssl(['verify', '-CAfile', join(dir, 'root.crt'), join(dir, 'node.crt')]);
    assert.equal(verify.code, 0, verify.out);
    const subject = await openssl(['x509', '-noout', '-subject', '-in', join(dir, 'node.crt')]);
    assert.equal(subject.out.trim(), `subject=O = ext, OU = meshd-worker, CN = ${node.nodeId}`);
    const { notBeforeMs, notAfterMs } = certificateValidity(node.material.certChainPem);
    assert.ok(
      Math.abs(notAfterMs - notBeforeMs - 24 * HOUR_MS) < 10 * 60_000,
      'the cfssl profile sets the lifetime',
    );
  });

  test('a signer that is down gives a clear error naming it', async () => {
    const down = new CfsslSigner({
      url: `http://127.0.0.1:${await freePort()}`,
      rootCertPem: root.certPem,
      timeoutMs: 2000,
    });
    const { csrPem } = await createKeyAndCsr();
    await assert.rejects(
      down.sign({ csrPem, nodeId: 'n1', role: 'worker', clusterId: 'ext', addresses: [], nowMs: Date.now() }),
      /external CA http:\/\/127\.0\.0\.1:\d+\/api\/v1\/cfssl\/sign did not answer/,
    );
  });

  test('a certificate from a signer with another root is refused', async () => {
    const other = await createRootCA({ clusterId: 'ext', nowMs: Date.now() });
    const wrongRoot = new CfsslSigner({ url: cfsslUrl, rootCertPem: other.certPem, profile: 'node' });
    const { csrPem } = await createKeyAndCsr();
    await assert.rejects(
      wrongRoot.sign({
        csrPem,
        nodeId: 'n2',
        role: 'worker',
        clusterId: 'ext',
        addresses: [],
        nowMs: Date.now(),
      }),
      /not signed by the cluster's root/,
    );
  });
});
