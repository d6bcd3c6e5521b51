// Shared by the transport and CA tests and the pki benchmark: a tiny JSON
// gRPC service with one method per access rule, and node identities.
import * as grpc from '@grpc/grpc-js';
import { issueNodeCertificate, type NodeRole, type RootCA } from '../../../controlplane/ca/authority.js';
import { createKeyAndCsr } from '../../../controlplane/ca/node-identity.js';
import { newId } from '../../../src/common/ids.js';
import type { MethodAccess } from '../../../src/common/transport/authorization.js';
import type { TlsMaterial } from '../../../src/common/transport/credentials.js';

type Json = Record<string, unknown>;
const toBuf = (v: Json): Buffer => Buffer.from(JSON.stringify(v));
const fromBuf = (b: Buffer): Json => JSON.parse(b.toString()) as Json;

function method(name: string, responseStream = false): grpc.MethodDefinition<Json, Json> {
  return {
    path: `/meshd.test.Echo/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: toBuf,
    requestDeserialize: fromBuf,
    responseSerialize: toBuf,
    responseDeserialize: fromBuf,
  };
}

export const echoService = {
  echo: method('Echo'),
  admin: method('Admin'),
  join: method('Join'),
  hello: method('Hello'),
  watch: method('Watch', true),
} satisfies grpc.ServiceDefinition;

export const echoAccess: { [K in keyof typeof echoService]: MethodAccess } = {
  echo: 'node',
  admin: 'manager',
  join: 'node-or-join-token',
  hello: 'public',
  watch: 'node',
};

export const EchoClient = grpc.makeGenericClientConstructor(echoService, 'Echo');
export type EchoClientT = InstanceType<typeof EchoClient> & {
  [K in keyof typeof echoService]: (...args: unknown[]) => unknown;
};

/** Echo handlers; Watch streams one message per `intervalMs` until cancelled. */
export function echoHandlers(
  identityOf: (call: grpc.ServerUnaryCall<Json, Json>) => unknown,
): grpc.UntypedServiceImplementation {
  const unary: grpc.handleUnaryCall<Json, Json> = (call, cb) =>
    cb(null, { ...call.request, caller: identityOf(call) });
  return {
    echo: unary,
    admin: unary,
    join: unary,
    hello: unary,
    watch: ((call: grpc.ServerWritableStream<Json, Json>) => {
      let n = 0;
      const timer = setInterval(() => call.write({ n: n++ }), Number(call.request['intervalMs'] ?? 20));
      call.on('cancelled', () => clearInterval(timer));
      call.on('close', () => clearInterval(timer));
    }) as grpc.handleServerStreamingCall<Json, Json>,
  };
}

export function unaryCall(
  client: grpc.Client,
  name: keyof typeof echoService,
  req: Json,
  md?: grpc.Metadata,
): Promise<Json> {
  const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!.bind(client);
  return new Promise((resolve, reject) => {
    const cb = (err: grpc.ServiceError | null, res: Json) => (err ? reject(err) : resolve(res));
    if (md !== undefined) fn(req, md, { deadline: Date.now() + 5000 }, cb);
    else fn(req, { deadline: Date.now() + 5000 }, cb);
  });
}

export async function nodeMaterial(
  root: RootCA,
  opts: {
    role: NodeRole;
    nowMs?: number;
    lifetimeMs?: number;
    nodeId?: string;
    clusterId?: string;
    trust?: string;
  },
): Promise<TlsMaterial & { nodeId: string }> {
  const { privateKeyPem, csrPem } = await createKeyAndCsr();
  const nodeId = opts.nodeId ?? newId();
  const issued = await issueNodeCertificate(root, {
    csrPem,
    nodeId,
    role: opts.role,
    clusterId: opts.clusterId ?? root.clusterId,
    addresses: ['127.0.0.1', 'localhost'],
    nowMs: opts.nowMs ?? Date.now(),
    ...(opts.lifetimeMs === undefined ? {} : { lifetimeMs: opts.lifetimeMs }),
  });
  return {
    nodeId,
    privateKeyPem,
    certChainPem: issued.certChainPem,
    trustBundlePem: opts.trust ?? root.certPem,
  };
}
