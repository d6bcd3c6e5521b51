/**
 * External CA mode: managers relay node CSRs to a CFSSL-compatible signer
 * (`POST <url>/api/v1/cfssl/sign`) instead of signing with a local root key.
 * The CA still decides the subject and the SANs and sends them along; the
 * answer is checked (subject, chain to the cluster root) before it is handed
 * to a node, so a misconfigured signer cannot mint a wrong identity.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { errorMessage, MeshError } from '../../src/common/errors.js';
import { type IssuedCertificate, type IssueRequest, roleToOu, verifyCsr } from './authority.js';
import type { ExternalCaConfig } from './ca-state.js';
import type { NodeCertificateSigner } from './certificate-authority.js';
import { joinPem, parseCertificate, readSubject } from './x509.js';

export interface CfsslSignerOptions {
  /** Base URL of the signer, e.g. http://127.0.0.1:8888 */
  url: string;
  /** The cluster root the signer's certificates must chain to (PEM). */
  rootCertPem: string;
  /** CFSSL signing profile; its expiry sets the certificate lifetime. */
  profile?: string;
  timeoutMs?: number;
  /** PEM of the CA that signed the signer's HTTPS certificate (a private CA); default: the system's. */
  tlsCaPem?: string;
}

interface CfsslResponse {
  success?: boolean;
  result?: { certificate?: string };
  errors?: { code?: number; message?: string }[];
}

export class CfsslSigner implements NodeCertificateSigner {
  private readonly url: string;

  constructor(private readonly opts: CfsslSignerOptions) {
    let parsed: URL;
    try {
      parsed = new URL(opts.url);
    } catch {
      throw new MeshError('INVALID_ARGUMENT', `external CA url: expected an http(s) URL, got "${opts.url}"`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      throw new MeshError(
        'INVALID_ARGUMENT',
        `external CA url: expected http or https, got "${parsed.protocol}"`,
      );
    this.url = `${opts.url.replace(/\/+$/, '')}/api/v1/cfssl/sign`;
  }

  async sign(req: IssueRequest): Promise<IssuedCertificate> {
    // Refuse a bad CSR here rather than forwarding it.
    await verifyCsr(req.csrPem);
    const ou = roleToOu(req.role);
    const body = {
      certificate_request: req.csrPem,
      hosts: [req.nodeId, ou, ...req.addresses],
      subject: { CN: req.nodeId, names: [{ O: req.clusterId, OU: ou }] },
      ...(this.opts.profile === undefined ? {} : { profile: this.opts.profile }),
    };
    let answer: CfsslResponse;
    try {
      answer = JSON.parse(
        await postJson(this.url, JSON.stringify(body), this.opts.timeoutMs ?? 10_000, this.opts.tlsCaPem),
      ) as CfsslResponse;
    } catch (err) {
      throw new MeshError(
        'EXTERNAL_CA_FAILED',
        `external CA ${this.url} did not answer: ${errorMessage(err)}`,
      );
    }
    const pem = answer.result?.certificate;
    if (answer.success !== true || typeof pem !== 'string') {
      const why = answer.errors?.map((e) => e.message).join('; ') || 'no certificate in the answer';
      throw new MeshError('EXTERNAL_CA_FAILED', `external CA ${this.url} refused to sign: ${why}`);
    }
    const cert = parseCertificate(pem, 'external CA answer');
    const got = readSubject(cert);
    if (got.commonName !== req.nodeId || got.organizationalUnit !== ou || got.organization !== req.clusterId)
      throw new MeshError(
        'EXTERNAL_CA_FAILED',
        `external CA returned subject CN=${got.commonName} OU=${got.organizationalUnit ?? ''} O=${got.organization ?? ''}, expected CN=${req.nodeId} OU=${ou} O=${req.clusterId}`,
      );
    const root = parseCertificate(this.opts.rootCertPem, 'external CA root');
    if (!(await cert.verify({ publicKey: root.publicKey, signatureOnly: true })))
      throw new MeshError(
        'EXTERNAL_CA_FAILED',
        "external CA returned a certificate not signed by the cluster's root",
      );
    return {
      certChainPem: joinPem(cert.toString('pem')),
      notBeforeMs: cert.notBefore.getTime(),
      notAfterMs: cert.notAfter.getTime(),
    };
  }
}

/** Largest answer read from the signer (a certificate is a few kB). */
const MAX_ANSWER_BYTES = 1024 * 1024;

/** POSTs `body` and resolves the answer's text, whatever its HTTP status (CFSSL puts its errors in the JSON). */
function postJson(
  url: string,
  body: string,
  timeoutMs: number,
  tlsCaPem: string | undefined,
): Promise<string> {
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      target,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: timeoutMs,
        ...(tlsCaPem === undefined ? {} : { ca: tlsCaPem }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** The signer for a cluster's external CA setting (the replicated state's, or `meshd init`'s). */
export function signerForExternalCa(config: ExternalCaConfig, rootCertPem: string): CfsslSigner {
  return new CfsslSigner({
    url: config.url,
    rootCertPem,
    ...(config.profile === '' ? {} : { profile: config.profile }),
    ...(config.tlsCaPem === '' ? {} : { tlsCaPem: config.tlsCaPem }),
  });
}
