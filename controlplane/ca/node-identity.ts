/**
 * The node's side of its identity: its own key and CSR (the key never leaves
 * the node), and the files that hold key, certificate and trust bundle.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileDurable } from '../../src/common/durable-file.js';
import { generateKeyPair, x509 } from './x509.js';

export interface NodeKeyAndCsr {
  privateKeyPem: string;
  csrPem: string;
}

/** The CSR's subject is a placeholder: the CA sets the real one. */
export async function createKeyAndCsr(): Promise<NodeKeyAndCsr> {
  const { keys, privateKeyPem } = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=meshd-node-request',
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  return { privateKeyPem, csrPem: csr.toString('pem') };
}

/** What a node needs to speak mTLS: its key, its certificate chain, and the roots it trusts. */
export interface NodeTlsMaterial {
  privateKeyPem: string;
  certChainPem: string;
  /** One or more root certificates (two during a root rotation). */
  trustBundlePem: string;
}

const FILES = { privateKeyPem: 'node.key', certChainPem: 'node.crt', trustBundlePem: 'ca.crt' } as const;

/**
 * Writes the material under `dir` (key mode 0600), each file replaced
 * atomically with fsync so a crash leaves the old or the new file, never half.
 */
export function saveNodeTlsMaterial(dir: string, material: NodeTlsMaterial): void {
  writeFileDurable(join(dir, FILES.trustBundlePem), material.trustBundlePem, 0o644);
  writeFileDurable(join(dir, FILES.certChainPem), material.certChainPem, 0o644);
  writeFileDurable(join(dir, FILES.privateKeyPem), material.privateKeyPem, 0o600);
}

export function loadNodeTlsMaterial(dir: string): NodeTlsMaterial {
  return {
    privateKeyPem: readFileSync(join(dir, FILES.privateKeyPem), 'utf8'),
    certChainPem: readFileSync(join(dir, FILES.certChainPem), 'utf8'),
    trustBundlePem: readFileSync(join(dir, FILES.trustBundlePem), 'utf8'),
  };
}
