/**
 * The node's side of the CA protocol: join with a token (checking the shown
 * root against the token's digest before anything else is sent) and renew
 * with the current certificate.
 */
import * as grpc from '@grpc/grpc-js';
import {
  CAServiceClient,
  CertificateState,
  type IssueNodeCertificateResponse,
  type NodeCertificateStatusResponse,
} from '../../src/api/gen/meshd/v1/ca.js';
import { MeshError } from '../../src/common/errors.js';
import { JOIN_TOKEN_METADATA_KEY } from '../../src/common/transport/authorization.js';
import {
  createBootstrapChannelCredentials,
  createChannelCredentials,
  createJoinChannelCredentials,
  SECURE_CHANNEL_OPTIONS,
  type TlsMaterial,
} from '../../src/common/transport/credentials.js';
import { type NodeRole, roleToOu } from './authority.js';
import { roleFromProto } from './ca-service.js';
import { verifyShownRoot } from './join-token.js';
import { createKeyAndCsr } from './node-identity.js';
import { parseCertificate, readSubject } from './x509.js';

export interface NodeCertificate {
  nodeId: string;
  role: NodeRole;
  clusterId: string;
  notAfterMs: number;
  material: TlsMaterial;
}

const CALL_TIMEOUT_MS = 10_000;

function call<Res>(invoke: (cb: (err: grpc.ServiceError | null, res: Res) => void) => void): Promise<Res> {
  return new Promise((resolve, reject) => invoke((err, res) => (err ? reject(err) : resolve(res))));
}

function options(): Partial<grpc.CallOptions> {
  return { deadline: Date.now() + CALL_TIMEOUT_MS };
}

function toNodeCertificate(
  res: IssueNodeCertificateResponse,
  privateKeyPem: string,
  clusterId: string,
): NodeCertificate {
  return {
    nodeId: res.nodeId,
    role: roleFromProto(res.role, 'role'),
    clusterId,
    notAfterMs: res.notAfter?.unixMs ?? 0,
    material: { privateKeyPem, certChainPem: res.certificateChainPem, trustBundlePem: res.trustBundlePem },
  };
}

/**
 * Joins through the manager at `target` (host:port). The only call made
 * before the root is checked against the token is GetRootCACertificate,
 * which carries nothing.
 */
export async function joinCluster(opts: {
  target: string;
  token: string;
  addresses: readonly string[];
}): Promise<NodeCertificate> {
  const bootstrap = new CAServiceClient(
    opts.target,
    createBootstrapChannelCredentials(),
    SECURE_CHANNEL_OPTIONS,
  );
  let shown: { rootCertificatePem: string; trustBundlePem: string };
  try {
    shown = await call((cb) => bootstrap.getRootCaCertificate({}, new grpc.Metadata(), options(), cb));
  } finally {
    bootstrap.close();
  }
  verifyShownRoot(opts.token, shown.rootCertificatePem);
  const clusterId = readSubject(
    parseCertificate(shown.rootCertificatePem, 'root CA certificate'),
  ).organization;
  if (clusterId === undefined)
    throw new MeshError('CA_INVALID', 'the root CA certificate has no O (cluster ID)');
  const client = new CAServiceClient(
    opts.target,
    createJoinChannelCredentials(shown.trustBundlePem, {
      clusterId,
      organizationalUnit: roleToOu('manager'),
    }),
    SECURE_CHANNEL_OPTIONS,
  );
  try {
    const { privateKeyPem, csrPem } = await createKeyAndCsr();
    const md = new grpc.Metadata();
    md.set(JOIN_TOKEN_METADATA_KEY, opts.token);
    const res = await call<IssueNodeCertificateResponse>((cb) =>
      client.issueNodeCertificate({ csrPem, addresses: [...opts.addresses] }, md, options(), cb),
    );
    return toNodeCertificate(res, privateKeyPem, clusterId);
  } finally {
    client.close();
  }
}

/** A CA client authenticated with the node's current certificate (the server is a manager). */
function mtlsClient(target: string, current: NodeCertificate): CAServiceClient {
  return new CAServiceClient(
    target,
    createChannelCredentials(current.material, {
      clusterId: current.clusterId,
      organizationalUnit: roleToOu('manager'),
    }),
    SECURE_CHANNEL_OPTIONS,
  );
}

/** Renews over mTLS with the current certificate; the node keeps its ID, gets a fresh key. */
export async function renewNodeCertificate(opts: {
  target: string;
  current: NodeCertificate;
  addresses: readonly string[];
}): Promise<NodeCertificate> {
  const client = mtlsClient(opts.target, opts.current);
  try {
    const { privateKeyPem, csrPem } = await createKeyAndCsr();
    const res = await call<IssueNodeCertificateResponse>((cb) =>
      client.issueNodeCertificate(
        { csrPem, addresses: [...opts.addresses] },
        new grpc.Metadata(),
        options(),
        cb,
      ),
    );
    return toNodeCertificate(res, privateKeyPem, opts.current.clusterId);
  } finally {
    client.close();
  }
}

/** The CA's view of this node's certificate: current, renew now, removed, or unknown. */
export async function fetchCertificateStatus(opts: {
  target: string;
  current: NodeCertificate;
}): Promise<{ state: 'current' | 'renew' | 'removed' | 'unknown'; trustBundlePem: string }> {
  const client = mtlsClient(opts.target, opts.current);
  try {
    let res: NodeCertificateStatusResponse;
    try {
      res = await call<NodeCertificateStatusResponse>((cb) =>
        client.nodeCertificateStatus({ nodeId: opts.current.nodeId }, new grpc.Metadata(), options(), cb),
      );
    } catch (err) {
      // A removed node is refused by the authorization layer before the handler runs.
      const e = err as Partial<grpc.ServiceError>;
      if (e.code === grpc.status.PERMISSION_DENIED && /was removed from the cluster/.test(e.details ?? ''))
        return { state: 'removed', trustBundlePem: '' };
      throw err;
    }
    const trustBundlePem = res.trustBundlePem;
    switch (res.state) {
      case CertificateState.CERTIFICATE_STATE_CURRENT:
        return { state: 'current', trustBundlePem };
      case CertificateState.CERTIFICATE_STATE_RENEW:
        return { state: 'renew', trustBundlePem };
      case CertificateState.CERTIFICATE_STATE_REMOVED:
        return { state: 'removed', trustBundlePem };
      default:
        return { state: 'unknown', trustBundlePem };
    }
  } finally {
    client.close();
  }
}
