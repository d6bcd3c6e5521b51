/**
 * mTLS credentials for @grpc/grpc-js from a node's key, certificate chain and
 * trust bundle. TLS 1.3 only, both directions; the server asks every client
 * for a certificate and (unless told otherwise) refuses a client without a
 * valid one in the handshake; the authorization interceptor (authorization.ts)
 * then decides per method who may call.
 */
import { createSecureContext, type PeerCertificate, type SecureContextOptions } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { MeshError } from '../errors.js';

/** What a node needs to speak mTLS. */
export interface TlsMaterial {
  /** PKCS#8 PEM. Never logged. */
  privateKeyPem: string;
  /** The node's certificate followed by any intermediates (PEM). */
  certChainPem: string;
  /** The root certificates this node trusts (two during a root rotation). */
  trustBundlePem: string;
}

const TLS13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

/**
 * Channel option that keeps the TLS SNI a name rather than an IP address
 * (RFC 6066 forbids IPs there); peers are identified by certificate subject,
 * not by host name, see `checkPeerIdentity`.
 */
export const SECURE_CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': 'meshd' };

function contextOptions(material: TlsMaterial): SecureContextOptions {
  return { ...TLS13, key: material.privateKeyPem, cert: material.certChainPem, ca: material.trustBundlePem };
}

/**
 * Server credentials whose key, certificate and trust bundle can be swapped
 * while the server runs (`reload`): grpc-js calls `setSecureContext` on every
 * listener, so new handshakes use the new material and open connections and
 * streams continue untouched.
 */
export interface ServerCredentialOptions {
  /**
   * Accept TLS clients that present no valid certificate and leave the refusal
   * to the authorization interceptor, which says why per call. Only the
   * listener that serves joining nodes (the CA service) needs this; every other
   * listener refuses such clients in the handshake.
   */
  acceptClientsWithoutCertificate?: boolean;
}

export class ReloadableServerCredentials extends grpc.ServerCredentials {
  constructor(material: TlsMaterial, opts: ServerCredentialOptions = {}) {
    super(
      { ...TLS13, requestCert: true, rejectUnauthorized: opts.acceptClientsWithoutCertificate !== true },
      contextOptions(material),
    );
  }

  reload(material: TlsMaterial): void {
    // Fail here, loudly, rather than in grpc-js, which would drop every new connection.
    createSecureContext(contextOptions(material));
    this.updateSecureContextOptions(contextOptions(material));
  }

  override _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/** What a client expects of the server it dials. */
export interface PeerExpectation {
  clusterId: string;
  /** e.g. 'meshd-manager' when only a manager may answer. */
  organizationalUnit?: string;
  nodeId?: string;
}

export function checkPeerIdentity(expect: PeerExpectation, cert: PeerCertificate): Error | undefined {
  const subject = cert.subject as Partial<Record<string, string | string[]>> | undefined;
  const field = (name: string): string | undefined => {
    const v = subject?.[name];
    return Array.isArray(v) ? v[0] : v;
  };
  if (field('O') !== expect.clusterId)
    return new MeshError(
      'PEER_IDENTITY_MISMATCH',
      `server certificate O is "${field('O') ?? ''}", expected cluster "${expect.clusterId}"`,
    );
  if (expect.organizationalUnit !== undefined && field('OU') !== expect.organizationalUnit)
    return new MeshError(
      'PEER_IDENTITY_MISMATCH',
      `server certificate OU is "${field('OU') ?? ''}", expected "${expect.organizationalUnit}"`,
    );
  if (expect.nodeId !== undefined && field('CN') !== expect.nodeId)
    return new MeshError(
      'PEER_IDENTITY_MISMATCH',
      `server certificate CN is "${field('CN') ?? ''}", expected node "${expect.nodeId}"`,
    );
  return undefined;
}

/**
 * Client credentials presenting the node's certificate. A channel keeps the
 * material it was made with; after a renewal make new channels (open ones
 * keep working until they close).
 */
export function createChannelCredentials(
  material: TlsMaterial,
  expect: PeerExpectation,
): grpc.ChannelCredentials {
  return grpc.ChannelCredentials.createFromSecureContext(createSecureContext(contextOptions(material)), {
    checkServerIdentity: (_host, cert) => checkPeerIdentity(expect, cert),
  });
}

/**
 * Credentials for a node that has no certificate yet but knows the trust
 * bundle (after checking it against its join token): verifies the server,
 * presents nothing.
 */
export function createJoinChannelCredentials(
  trustBundlePem: string,
  expect: PeerExpectation,
): grpc.ChannelCredentials {
  return grpc.ChannelCredentials.createFromSecureContext(
    createSecureContext({ ...TLS13, ca: trustBundlePem }),
    {
      checkServerIdentity: (_host, cert) => checkPeerIdentity(expect, cert),
    },
  );
}

/**
 * The one unverified channel: used only to fetch the root CA certificate,
 * which the caller must check against its join token's digest before it
 * sends anything else (see controlplane/ca/join.ts). Still TLS 1.3.
 */
export function createBootstrapChannelCredentials(): grpc.ChannelCredentials {
  return grpc.ChannelCredentials.createFromSecureContext(createSecureContext(TLS13), {
    rejectUnauthorized: false,
  });
}

/** Binds a secure listener; resolves to the bound port (pass port 0 for an OS-chosen one). */
export function bindSecure(
  server: grpc.Server,
  address: string,
  credentials: grpc.ServerCredentials,
): Promise<number> {
  if (!credentials._isSecure())
    throw new MeshError(
      'PLAINTEXT_REFUSED',
      `refusing to bind ${address} without TLS: meshd has no plaintext listener`,
    );
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port)));
  });
}
