/**
 * The issuing side: a root CA (created at `init`), cross-signing for root
 * rotation, and node certificates signed from a node's CSR. The CA decides the
 * subject (CN = node ID, OU = role, O = cluster ID), never the requester.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { writeFileDurable } from '../../src/common/durable-file.js';
import { ValidationError } from '../../src/common/errors.js';
import {
  type CryptoKey,
  certificateDigest,
  generateKeyPair,
  importPrivateKey,
  joinPem,
  parseCertificate,
  randomSerialHex,
  readSubject,
  subjectName,
  x509,
} from './x509.js';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
export const ROOT_LIFETIME_MS = 20 * 365 * DAY_MS;
export const DEFAULT_NODE_CERT_LIFETIME_MS = 90 * DAY_MS;
export const MIN_NODE_CERT_LIFETIME_MS = HOUR_MS;
/** Certificates start this far in the past so a peer whose clock lags still accepts them. */
export const BACKDATE_MS = HOUR_MS;

export const NODE_ROLES = ['manager', 'worker'] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

/** The OU that carries a role in a node certificate. */
export function roleToOu(role: NodeRole): string {
  return `meshd-${role}`;
}

export function ouToRole(ou: string | undefined): NodeRole | undefined {
  if (ou === 'meshd-manager') return 'manager';
  if (ou === 'meshd-worker') return 'worker';
  return undefined;
}

/** What signs node certificates: a root (or rotation target) with its key. */
export interface Signer {
  /** The signing certificate (PEM). */
  certPem: string;
  privateKey: CryptoKey;
  /**
   * Certificates appended after the leaf in what a node presents, e.g. the
   * new root cross-signed by the old one during a root rotation.
   */
  chainPem: string;
}

/** A root certificate without its key: what managers hold in external CA mode. */
export interface RootCertificate {
  clusterId: string;
  certPem: string;
  /** SHA-256 of the root certificate, what join tokens pin. */
  digestHex: string;
}

export interface RootCA extends Signer, RootCertificate {
  privateKeyPem: string;
}

export function hasRootKey(root: RootCertificate): root is RootCA {
  return 'privateKey' in root;
}

/** The root certificate alone (external CA mode: the key stays with the signer). */
export function loadRootCertificate(certPem: string): RootCertificate {
  const cert = parseCertificate(certPem, 'root CA certificate');
  const clusterId = readSubject(cert).organization;
  if (clusterId === undefined)
    throw new ValidationError('root CA certificate', 'root CA certificate: subject has no O (cluster ID)');
  return { clusterId, certPem: joinPem(cert.toString('pem')), digestHex: certificateDigest(certPem) };
}

export async function createRootCA(opts: { clusterId: string; nowMs: number }): Promise<RootCA> {
  requireName('clusterId', opts.clusterId);
  const { keys, privateKeyPem } = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    // Each root gets its own CN so an old and a new root never share a name
    // during rotation (OpenSSL looks issuers up by name first).
    name: subjectName({
      commonName: `meshd-root-ca-${randomSerialHex().slice(0, 8)}`,
      organization: opts.clusterId,
    }),
    notBefore: new Date(opts.nowMs - BACKDATE_MS),
    notAfter: new Date(opts.nowMs + ROOT_LIFETIME_MS),
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = joinPem(cert.toString('pem'));
  return {
    clusterId: opts.clusterId,
    certPem,
    privateKey: keys.privateKey,
    privateKeyPem,
    chainPem: '',
    digestHex: certificateDigest(certPem),
  };
}

export async function loadRootCA(certPem: string, privateKeyPem: string): Promise<RootCA> {
  return {
    ...loadRootCertificate(certPem),
    privateKey: await importPrivateKey(privateKeyPem, 'root CA key'),
    privateKeyPem,
    chainPem: '',
  };
}

const ROOT_FILES = { cert: 'root.crt', key: 'root.key' } as const;

/** Writes the root under `dir` (the state directory's ca/), the key mode 0600, durably. */
export function saveRootCA(dir: string, root: RootCA): void {
  writeFileDurable(join(dir, ROOT_FILES.cert), root.certPem, 0o644);
  writeFileDurable(join(dir, ROOT_FILES.key), root.privateKeyPem, 0o600);
}

export function loadRootCAFromDir(dir: string): Promise<RootCA> {
  return loadRootCA(
    readFileSync(join(dir, ROOT_FILES.cert), 'utf8'),
    readFileSync(join(dir, ROOT_FILES.key), 'utf8'),
  );
}

/**
 * A certificate with the new root's subject and public key, signed by the old
 * root. Presented after leaves signed by the new key, it lets nodes that trust
 * only the old root verify them during a rotation.
 */
export async function crossSign(oldRoot: RootCA, newRoot: RootCA, nowMs: number): Promise<string> {
  const newCert = parseCertificate(newRoot.certPem, 'new root certificate');
  const oldCert = parseCertificate(oldRoot.certPem, 'old root certificate');
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: newCert.subjectName,
    issuer: oldCert.subjectName,
    notBefore: new Date(nowMs - BACKDATE_MS),
    notAfter: new Date(Math.min(newCert.notAfter.getTime(), oldCert.notAfter.getTime())),
    publicKey: newCert.publicKey,
    signingKey: oldRoot.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(newCert.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(oldCert.publicKey),
    ],
  });
  return joinPem(cert.toString('pem'));
}

export interface IssueRequest {
  csrPem: string;
  nodeId: string;
  role: NodeRole;
  clusterId: string;
  /** IP addresses and DNS names the node is reached at (SANs). */
  addresses: readonly string[];
  lifetimeMs?: number;
  nowMs: number;
}

export interface IssuedCertificate {
  /** The leaf followed by the signer's chain: what the node presents. */
  certChainPem: string;
  notBeforeMs: number;
  notAfterMs: number;
}

export function validateLifetimeMs(lifetimeMs: number): void {
  if (!Number.isInteger(lifetimeMs) || lifetimeMs < MIN_NODE_CERT_LIFETIME_MS)
    throw new ValidationError(
      'lifetimeMs',
      `certificate lifetimeMs must be an integer >= ${MIN_NODE_CERT_LIFETIME_MS} (1 hour), got ${lifetimeMs}`,
    );
}

/** Parses and verifies a CSR (its self-signature proves the requester holds the key). */
export async function verifyCsr(csrPem: string): Promise<x509.Pkcs10CertificateRequest> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new ValidationError('csr', `csr: expected a PEM PKCS#10 certificate request (${String(err)})`);
  }
  const alg = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256')
    throw new ValidationError(
      'csr',
      `csr: key must be ECDSA P-256, got ${alg.name ?? '?'} ${alg.namedCurve ?? ''}`,
    );
  if (!(await csr.verify())) throw new ValidationError('csr', 'csr: signature does not verify');
  return csr;
}

export async function issueNodeCertificate(signer: Signer, req: IssueRequest): Promise<IssuedCertificate> {
  requireName('nodeId', req.nodeId);
  requireName('clusterId', req.clusterId);
  const lifetimeMs = req.lifetimeMs ?? DEFAULT_NODE_CERT_LIFETIME_MS;
  validateLifetimeMs(lifetimeMs);
  const csr = await verifyCsr(req.csrPem);
  const { signerCert, authorityKeyId } = await signerInfo(signer);
  const notBeforeMs = req.nowMs - BACKDATE_MS;
  const notAfterMs = Math.min(req.nowMs + lifetimeMs, signerCert.notAfter.getTime());
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: subjectName({
      commonName: req.nodeId,
      organizationalUnit: roleToOu(req.role),
      organization: req.clusterId,
    }),
    issuer: signerCert.subjectName,
    notBefore: new Date(notBeforeMs),
    notAfter: new Date(notAfterMs),
    publicKey: csr.publicKey,
    signingKey: signer.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(sanEntries(req.nodeId, req.role, req.addresses)),
      authorityKeyId,
    ],
  });
  return {
    certChainPem: joinPem(cert.toString('pem'), signer.chainPem),
    notBeforeMs,
    notAfterMs,
  };
}

const signerInfoCache = new WeakMap<
  Signer,
  Promise<{ signerCert: x509.X509Certificate; authorityKeyId: x509.AuthorityKeyIdentifierExtension }>
>();

/** Parsed once per signer: issuing is on the join and renewal path of every node. */
function signerInfo(signer: Signer) {
  let info = signerInfoCache.get(signer);
  if (info === undefined) {
    const signerCert = parseCertificate(signer.certPem, 'signer certificate');
    info = x509.AuthorityKeyIdentifierExtension.create(signerCert.publicKey).then((authorityKeyId) => ({
      signerCert,
      authorityKeyId,
    }));
    signerInfoCache.set(signer, info);
  }
  return info;
}

function sanEntries(nodeId: string, role: NodeRole, addresses: readonly string[]): x509.JsonGeneralNames {
  const names: x509.JsonGeneralNames = [
    { type: 'dns', value: nodeId },
    { type: 'dns', value: roleToOu(role) },
  ];
  for (const [i, a] of addresses.entries()) {
    if (isIP(a) !== 0) names.push({ type: 'ip', value: a });
    else if (/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$/.test(a)) names.push({ type: 'dns', value: a });
    else
      throw new ValidationError(`addresses[${i}]`, `addresses[${i}]: expected an IP or DNS name, got "${a}"`);
  }
  return names;
}

function requireName(field: string, value: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$/.test(value))
    throw new ValidationError(field, `${field} must be 1-64 characters [A-Za-z0-9_-], got "${value}"`);
}
