import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, ServerCredentials } from '@grpc/grpc-js';

/**
 * A throwaway ECDSA P-256 CA and one leaf certificate (for 127.0.0.1 and
 * "raft-peer", usable as server and client) minted with the openssl CLI, so
 * transport tests run real mutual TLS. The PKI issue brings the real CA.
 */
export interface TlsFixture {
  caPem: Buffer;
  certPem: Buffer;
  keyPem: Buffer;
  /** Writes ca.pem, cert.pem and key.pem into `dir` (for child processes); returns their paths. */
  writeTo(dir: string): { caFile: string; certFile: string; keyFile: string };
  serverCredentials(): ServerCredentials;
  channelCredentials(): ReturnType<typeof credentials.createSsl>;
}

export function mintTlsFixture(): TlsFixture {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-tls-'));
  const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  try {
    ossl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
    ossl(
      'req',
      '-x509',
      '-new',
      '-key',
      'ca.key',
      '-subj',
      '/CN=meshd-test-ca',
      '-days',
      '2',
      '-out',
      'ca.pem',
    );
    ossl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'leaf.key.sec1');
    ossl('pkcs8', '-topk8', '-nocrypt', '-in', 'leaf.key.sec1', '-out', 'leaf.key');
    ossl('req', '-new', '-key', 'leaf.key', '-subj', '/CN=raft-peer', '-out', 'leaf.csr');
    writeFileSync(
      join(dir, 'ext.cnf'),
      'subjectAltName=DNS:raft-peer,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n',
    );
    ossl(
      'x509',
      '-req',
      '-in',
      'leaf.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      'ext.cnf',
      '-out',
      'leaf.pem',
    );
    const caPem = readFileSync(join(dir, 'ca.pem'));
    const certPem = readFileSync(join(dir, 'leaf.pem'));
    const keyPem = readFileSync(join(dir, 'leaf.key'));
    return {
      caPem,
      certPem,
      keyPem,
      writeTo(target: string) {
        const files = {
          caFile: join(target, 'ca.pem'),
          certFile: join(target, 'cert.pem'),
          keyFile: join(target, 'key.pem'),
        };
        writeFileSync(files.caFile, caPem);
        writeFileSync(files.certFile, certPem);
        writeFileSync(files.keyFile, keyPem, { mode: 0o600 });
        return files;
      },
      serverCredentials: () =>
        ServerCredentials.createSsl(caPem, [{ private_key: keyPem, cert_chain: certPem }], true),
      channelCredentials: () => credentials.createSsl(caPem, keyPem, certPem),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
