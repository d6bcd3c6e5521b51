/**
 * The gRPC face of the CA (meshd.v1.CAService). Authorization happens before
 * any handler runs (CA_SERVICE_POLICY with the transport interceptor); the
 * handlers turn MeshErrors into gRPC statuses with the message intact.
 */
import * as grpc from '@grpc/grpc-js';
import {
  type CAServiceServer,
  CAServiceService,
  CertificateState,
  type GetRootRotationResponse,
} from '../../src/api/gen/meshd/v1/ca.js';
import { NodeRole as ProtoNodeRole } from '../../src/api/gen/meshd/v1/objects.js';
import type { Clock } from '../../src/common/clock.js';
import { errorMessage, MeshError, ValidationError } from '../../src/common/errors.js';
import { subsystemLogger } from '../../src/common/logger.js';
import {
  callerIdentity,
  createAuthorizationInterceptor,
  JOIN_TOKEN_METADATA_KEY,
  type MethodAccess,
  servicePolicy,
} from '../../src/common/transport/authorization.js';
import type { NodeRole } from './authority.js';
import type { CertificateAuthority } from './certificate-authority.js';

const log = subsystemLogger('ca');

export const CA_SERVICE_ACCESS: { [K in keyof typeof CAServiceService]: MethodAccess } = {
  getRootCaCertificate: 'public',
  issueNodeCertificate: 'node-or-join-token',
  nodeCertificateStatus: 'node',
  getJoinTokens: 'manager',
  rotateJoinToken: 'manager',
  removeNode: 'manager',
  rotateRoot: 'manager',
  getRootRotation: 'manager',
};

export const CA_SERVICE_POLICY = servicePolicy(CAServiceService, CA_SERVICE_ACCESS);

export function roleToProto(role: NodeRole): ProtoNodeRole {
  return role === 'manager' ? ProtoNodeRole.NODE_ROLE_MANAGER : ProtoNodeRole.NODE_ROLE_WORKER;
}

export function roleFromProto(role: ProtoNodeRole, field: string): NodeRole {
  if (role === ProtoNodeRole.NODE_ROLE_MANAGER) return 'manager';
  if (role === ProtoNodeRole.NODE_ROLE_WORKER) return 'worker';
  throw new ValidationError(field, `${field} must be NODE_ROLE_MANAGER or NODE_ROLE_WORKER, got ${role}`);
}

const STATUS_BY_CODE: Record<string, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  JOIN_TOKEN_INVALID: grpc.status.UNAUTHENTICATED,
  NODE_REMOVED: grpc.status.PERMISSION_DENIED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  EXTERNAL_CA_FAILED: grpc.status.UNAVAILABLE,
  CA_NOT_READY: grpc.status.UNAVAILABLE,
  NOT_LEADER: grpc.status.UNAVAILABLE,
};

function toServiceError(err: unknown): Partial<grpc.ServiceError> {
  if (err instanceof MeshError)
    return {
      code:
        STATUS_BY_CODE[err.code] ??
        (err.code.startsWith('RAFT_') ? grpc.status.UNAVAILABLE : grpc.status.FAILED_PRECONDITION),
      details: err.message,
    };
  log.error({ err: errorMessage(err) }, 'CA handler failed');
  return { code: grpc.status.INTERNAL, details: `internal CA error: ${errorMessage(err)}` };
}

/** Runs an async handler body and reports its result or error through the callback. */
function unary<Req, Res>(
  body: (call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    body(call).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toServiceError(err)),
    );
  };
}

export function createCaServiceHandlers(ca: CertificateAuthority): CAServiceServer {
  return {
    getRootCaCertificate: unary(async () => ({
      rootCertificatePem: ca.rootCertificatePem(),
      trustBundlePem: ca.trustBundlePem(),
    })),
    issueNodeCertificate: unary(async (call) => {
      const caller = callerIdentity(call);
      const { csrPem, addresses } = call.request;
      let issued: Awaited<ReturnType<CertificateAuthority['renew']>>;
      if (caller !== undefined) {
        issued = await ca.renew(caller, csrPem, addresses);
      } else {
        const token = call.metadata.get(JOIN_TOKEN_METADATA_KEY)[0];
        if (typeof token !== 'string')
          throw new MeshError('JOIN_TOKEN_INVALID', 'a node certificate or a join token is required');
        issued = await ca.issueForJoinToken(token, csrPem, addresses);
      }
      log.info(
        { nodeId: issued.nodeId, role: issued.role, notAfterMs: issued.notAfterMs },
        'issued node certificate',
      );
      return {
        nodeId: issued.nodeId,
        role: roleToProto(issued.role),
        certificateChainPem: issued.certChainPem,
        trustBundlePem: ca.trustBundlePem(),
        notAfter: { unixMs: issued.notAfterMs },
      };
    }),
    nodeCertificateStatus: unary(async (call) => {
      const caller = callerIdentity(call);
      const nodeId = call.request.nodeId === '' ? (caller?.nodeId ?? '') : call.request.nodeId;
      // Workers may ask only about themselves.
      if (caller?.role !== 'manager' && caller?.nodeId !== nodeId)
        throw new MeshError(
          'NODE_REMOVED',
          `node ${caller?.nodeId ?? '?'} may only ask about its own certificate`,
        );
      const status = ca.status(nodeId);
      switch (status.state) {
        case 'current':
        case 'renew':
          return {
            state:
              status.state === 'current'
                ? CertificateState.CERTIFICATE_STATE_CURRENT
                : CertificateState.CERTIFICATE_STATE_RENEW,
            role: roleToProto(status.record.role),
            notAfter: { unixMs: status.record.notAfterMs },
            trustBundlePem: ca.trustBundlePem(),
          };
        case 'removed':
          return {
            state: CertificateState.CERTIFICATE_STATE_REMOVED,
            role: ProtoNodeRole.NODE_ROLE_UNSPECIFIED,
            notAfter: undefined,
            trustBundlePem: '',
          };
        case 'unknown':
          return {
            state: CertificateState.CERTIFICATE_STATE_UNKNOWN,
            role: ProtoNodeRole.NODE_ROLE_UNSPECIFIED,
            notAfter: undefined,
            trustBundlePem: '',
          };
      }
    }),
    getJoinTokens: unary(async () => {
      const t = ca.joinTokens();
      return {
        workerToken: t.worker,
        managerToken: t.manager,
        expiresAt: t.expiresAtMs === undefined ? undefined : { unixMs: t.expiresAtMs },
      };
    }),
    rotateJoinToken: unary(async (call) => ({
      token: await ca.rotateJoinToken(
        roleFromProto(call.request.role, 'role'),
        call.request.expiresAt === undefined ? undefined : Number(call.request.expiresAt.unixMs),
      ),
    })),
    removeNode: unary(async (call) => {
      if (call.request.nodeId === '') throw new ValidationError('nodeId', 'nodeId must not be empty');
      await ca.removeNode(call.request.nodeId);
      return {};
    }),
    rotateRoot: unary(async (call) => {
      const batch = call.request.batchSize;
      if (!(Number.isInteger(batch) && batch >= 0 && batch <= 10_000))
        throw new ValidationError('batchSize', `batchSize must be 0 (the default) or 1..10000, got ${batch}`);
      await (batch === 0 ? ca.rotateRoot() : ca.rotateRoot(batch));
      return { status: rotationResponse(ca) };
    }),
    getRootRotation: unary(async () => rotationResponse(ca)),
  };
}

function rotationResponse(ca: CertificateAuthority): GetRootRotationResponse {
  const status = ca.rotationStatus();
  return {
    rootDigestHex: status.rootDigestHex,
    nextRootDigestHex: status.nextRootDigestHex,
    nodesTotal: status.nodesTotal,
    pendingNodeIds: status.pendingNodeIds.slice(0, 20),
    nodesPending: status.pendingNodeIds.length,
    rootCertificatePem: ca.rootCertificatePem(),
  };
}

/**
 * A gRPC server with the CA service and the authorization interceptor. Other
 * services may be added to it; each must add its own entries to `extraPolicy`.
 */
export function createCaServer(
  ca: CertificateAuthority,
  opts: { clock?: Clock; extraPolicy?: Record<string, MethodAccess> } = {},
): grpc.Server {
  const server = new grpc.Server({
    interceptors: [
      createAuthorizationInterceptor({
        ...ca.authorizationOptions(),
        policy: { ...CA_SERVICE_POLICY, ...opts.extraPolicy },
        ...(opts.clock === undefined ? {} : { clock: opts.clock }),
      }),
    ],
  });
  server.addService(CAServiceService, createCaServiceHandlers(ca));
  return server;
}
