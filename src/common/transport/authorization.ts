/**
 * Per-call authorization from the peer certificate. Every gRPC method a
 * server exposes must be declared with who may call it; an undeclared method
 * is refused (default deny). Identities: CN = node ID, OU = role
 * (meshd-manager / meshd-worker), O = cluster ID.
 */
import { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { type Clock, systemClock } from '../clock.js';

export type MethodAccess =
  /** Only managers of this cluster. */
  | 'manager'
  /** Any node (manager or worker) of this cluster. */
  | 'node'
  /** Any node of this cluster, or a caller with a valid join token in metadata. */
  | 'node-or-join-token'
  /** Any TLS peer, certificate or not: only for what a joining node needs first (the root CA). */
  | 'public';

export type NodeRoleName = 'manager' | 'worker';

export interface CallerIdentity {
  nodeId: string;
  role: NodeRoleName;
  clusterId: string;
}

/** Metadata key a joining node puts its join token under. */
export const JOIN_TOKEN_METADATA_KEY = 'meshd-join-token';

export interface AuthorizationOptions {
  clusterId: string;
  /** Full method path ('/meshd.v1.CAService/GetRootCACertificate') to access rule. */
  policy: Readonly<Record<string, MethodAccess>>;
  /** Nodes removed from the cluster: refused even with an otherwise valid certificate. */
  isDenied?: (nodeId: string) => boolean;
  /** True when the token is a current join token (checked in constant time by the CA). */
  isValidJoinToken?: (token: string) => boolean;
  clock?: Clock;
}

/** Builds the policy entries of one service with the method names type-checked. */
export function servicePolicy<S extends grpc.ServiceDefinition>(
  service: S,
  access: { [K in keyof S]: MethodAccess },
): Record<string, MethodAccess> {
  const out: Record<string, MethodAccess> = {};
  for (const key of Object.keys(service)) {
    const def = service[key];
    const rule = access[key as keyof S];
    if (def !== undefined) out[def.path] = rule;
  }
  return out;
}

export interface PeerInfo {
  identity?: CallerIdentity;
  notAfterMs?: number;
  /** Why there is no usable identity, for the caller's error message. */
  problem?: string;
}

const peerCache = new WeakMap<object, PeerInfo>();

/**
 * grpc-js's public AuthContext is empty for a peer whose certificate failed
 * verification, which hides *why*; the first interceptor receives the base
 * call, whose stream leads to the TLS socket. Without it we fall back to
 * AuthContext and a less specific message.
 */
function tlsSocketOf(call: grpc.ServerInterceptingCallInterface): TLSSocket | undefined {
  const stream = (call as unknown as { stream?: { session?: { socket?: unknown } } }).stream;
  const socket = stream?.session?.socket;
  return socket instanceof TLSSocket ? socket : undefined;
}

function describeTlsFailure(code: string | undefined): string {
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'the client certificate has expired';
    case 'CERT_NOT_YET_VALID':
      return 'the client certificate is not valid yet';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
      return "the client certificate is not signed by this cluster's root CA";
    default:
      return `the client certificate did not verify (${code ?? 'unknown reason'})`;
  }
}

function identityFromSubject(subject: unknown): CallerIdentity | string {
  const s = subject as Partial<Record<string, string | string[]>> | undefined;
  const field = (name: string): string | undefined => {
    const v = s?.[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const ou = field('OU');
  const role: NodeRoleName | undefined =
    ou === 'meshd-manager' ? 'manager' : ou === 'meshd-worker' ? 'worker' : undefined;
  const nodeId = field('CN');
  const clusterId = field('O');
  if (role === undefined)
    return `the client certificate's OU "${ou ?? ''}" is not meshd-manager or meshd-worker`;
  if (nodeId === undefined || nodeId === '') return 'the client certificate has no CN (node ID)';
  if (clusterId === undefined) return 'the client certificate has no O (cluster ID)';
  return { nodeId, role, clusterId };
}

function peerInfo(call: grpc.ServerInterceptingCallInterface): PeerInfo {
  const socket = tlsSocketOf(call);
  if (socket !== undefined) {
    const cached = peerCache.get(socket);
    if (cached !== undefined) return cached;
    const info = peerInfoFromSocket(socket);
    peerCache.set(socket, info);
    return info;
  }
  const cert = call.getAuthContext().sslPeerCertificate;
  if (cert === undefined) return { problem: 'no verified client certificate was presented' };
  const id = identityFromSubject(cert.subject);
  return typeof id === 'string' ? { problem: id } : { identity: id, notAfterMs: Date.parse(cert.valid_to) };
}

function peerInfoFromSocket(socket: TLSSocket): PeerInfo {
  const cert = socket.getPeerCertificate();
  const presented = cert !== null && cert !== undefined && Object.keys(cert).length > 0;
  if (!presented) return { problem: 'no client certificate was presented' };
  if (!socket.authorized) return { problem: describeTlsFailure(String(socket.authorizationError ?? '')) };
  const id = identityFromSubject(cert.subject);
  return typeof id === 'string' ? { problem: id } : { identity: id, notAfterMs: Date.parse(cert.valid_to) };
}

/** The verified identity of the caller, for handlers (undefined for join-token callers). */
export function callerIdentity(call: {
  getAuthContext(): { sslPeerCertificate?: { subject: unknown } | undefined };
}): CallerIdentity | undefined {
  const cert = call.getAuthContext().sslPeerCertificate;
  if (cert === undefined) return undefined;
  const id = identityFromSubject(cert.subject);
  return typeof id === 'string' ? undefined : id;
}

export type AuthorizationDecision =
  | { allowed: true }
  | { allowed: false; code: grpc.status; details: string };

/** The decision alone, pure: who the caller is against what the method requires. */
export function decideAccess(
  method: string,
  access: MethodAccess | undefined,
  peer: PeerInfo,
  joinToken: string | undefined,
  opts: AuthorizationOptions,
  nowMs: number,
): AuthorizationDecision {
  const deny = (code: grpc.status, why: string): AuthorizationDecision => ({
    allowed: false,
    code,
    details: `${method}: ${why}`,
  });
  if (access === undefined)
    return deny(grpc.status.PERMISSION_DENIED, 'method has no access rule; refused by default');
  if (access === 'public') return { allowed: true };
  const id = peer.identity;
  if (id === undefined) {
    if (access === 'node-or-join-token' && joinToken !== undefined) {
      if (opts.isValidJoinToken?.(joinToken) === true) return { allowed: true };
      return deny(grpc.status.UNAUTHENTICATED, 'the join token is wrong, expired or was rotated out');
    }
    const needs =
      access === 'manager'
        ? 'a manager certificate'
        : access === 'node'
          ? 'a node certificate'
          : 'a node certificate or a join token';
    return deny(
      grpc.status.UNAUTHENTICATED,
      `requires ${needs}, but ${peer.problem ?? 'no identity was found'}`,
    );
  }
  if (id.clusterId !== opts.clusterId)
    return deny(
      grpc.status.PERMISSION_DENIED,
      `caller belongs to cluster "${id.clusterId}", not "${opts.clusterId}"`,
    );
  if (peer.notAfterMs !== undefined && nowMs > peer.notAfterMs)
    return deny(grpc.status.UNAUTHENTICATED, `node ${id.nodeId}: the client certificate has expired`);
  if (opts.isDenied?.(id.nodeId) === true)
    return deny(grpc.status.PERMISSION_DENIED, `node ${id.nodeId} was removed from the cluster`);
  if (access === 'manager' && id.role !== 'manager')
    return deny(
      grpc.status.PERMISSION_DENIED,
      `node ${id.nodeId} is a ${id.role}; only managers may call this method`,
    );
  return { allowed: true };
}

/** The interceptor to pass as `new grpc.Server({ interceptors: [it] })`; it must be the first one. */
export function createAuthorizationInterceptor(opts: AuthorizationOptions): grpc.ServerInterceptor {
  const clock = opts.clock ?? systemClock;
  return (methodDescriptor, call) => {
    const method = methodDescriptor.path;
    const access = opts.policy[method];
    const peer = peerInfo(call);
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        const raw = metadata.get(JOIN_TOKEN_METADATA_KEY)[0];
        const token = typeof raw === 'string' ? raw : undefined;
        const decision = decideAccess(method, access, peer, token, opts, clock.nowMs());
        if (decision.allowed) next(metadata);
        else call.sendStatus({ code: decision.code, details: decision.details });
      })
      .build();
    const responder = new grpc.ResponderBuilder().withStart((next) => next(listener)).build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}
