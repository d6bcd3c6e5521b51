/**
 * The one place that touches @peculiar/x509 and WebCrypto: key generation,
 * PEM encoding, certificate creation. Everything is ECDSA P-256 with SHA-256.
 */
import './reflect-metadata-shim.js';
import { createHash, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { ValidationError } from '../../src/common/errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

export { x509 };

export const ecdsaP256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface KeyPairPem {
  keys: CryptoKeyPair;
  privateKeyPem: string;
}

export async function generateKeyPair(): Promise<KeyPairPem> {
  const keys = (await webcrypto.subtle.generateKey(ecdsaP256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { keys, privateKeyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

/** Imports a PKCS#8 PEM private key (and derives its public half from the certificate). */
export async function importPrivateKey(privateKeyPem: string, field = 'privateKey'): Promise<CryptoKey> {
  try {
    const der = x509.PemConverter.decodeFirst(privateKeyPem);
    return await webcrypto.subtle.importKey('pkcs8', der, ecdsaP256, true, ['sign']);
  } catch (err) {
    throw new ValidationError(
      field,
      `${field}: expected a PKCS#8 PEM ECDSA P-256 private key (${String(err)})`,
    );
  }
}

export function parseCertificate(pem: string, field: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(pem);
  } catch (err) {
    throw new ValidationError(field, `${field}: expected a PEM X.509 certificate (${String(err)})`);
  }
}

/** Joins PEM blocks into one bundle, one block per line group, ending in a newline. */
export function joinPem(...blocks: string[]): string {
  return `${blocks
    .map((b) => b.trim())
    .filter((b) => b !== '')
    .join('\n')}\n`;
}

/** All certificates in a PEM bundle, in order. */
export function splitPemBundle(pem: string): string[] {
  return (
    pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((p) => `${p}\n`) ?? []
  );
}

/** SHA-256 of the certificate's DER, lowercase hex: what a join token pins. */
export function certificateDigest(pem: string): string {
  const der = x509.PemConverter.decodeFirst(pem);
  return createHash('sha256').update(Buffer.from(der)).digest('hex');
}

export function randomSerialHex(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // positive INTEGER, per RFC 5280 §4.1.2.2
  return Buffer.from(bytes).toString('hex');
}

/** The relative distinguished name values this project reads: CN, OU and O. */
export interface SubjectFields {
  commonName: string;
  organizationalUnit?: string;
  organization?: string;
}

export function subjectName(fields: SubjectFields): x509.JsonName {
  const name: x509.JsonName = [];
  if (fields.organization !== undefined) name.push({ O: [fields.organization] });
  if (fields.organizationalUnit !== undefined) name.push({ OU: [fields.organizationalUnit] });
  name.push({ CN: [fields.commonName] });
  return name;
}

export function readSubject(cert: x509.X509Certificate): SubjectFields {
  const name = cert.subjectName;
  const first = (type: string): string | undefined => name.getField(type)[0];
  const out: SubjectFields = { commonName: first('CN') ?? '' };
  const ou = first('OU');
  const o = first('O');
  if (ou !== undefined) out.organizationalUnit = ou;
  if (o !== undefined) out.organization = o;
  return out;
}
