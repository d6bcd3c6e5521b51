import * as grpc from '@grpc/grpc-js';
import { CAServiceClient, type CAServiceServer, CAServiceService } from '../api/gen/meshd/v1/ca.js';
import {
  ControlServiceClient,
  type ControlServiceServer,
  ControlServiceService,
} from '../api/gen/meshd/v1/control.js';
import { DiagServiceClient, type DiagServiceServer, DiagServiceService } from '../api/gen/meshd/v1/diag.js';
import {
  LogsServiceClient,
  type SubscribeLogsRequest,
  type SubscribeLogsResponse,
} from '../api/gen/meshd/v1/logs.js';

/** Where meshd listens for meshctl unless --socket or MESHD_SOCKET says otherwise. */
export const DEFAULT_SOCKET = '/run/meshd/meshd.sock';

/** Promise form of a generated unary service: `api.listNodes(req)` resolves with the response. */
export type Calls<S> = {
  [K in keyof S]: S[K] extends grpc.handleUnaryCall<infer Req, infer Res>
    ? (req: Req) => Promise<Res>
    : never;
};
export type ControlCalls = Calls<ControlServiceServer>;
export type CaCalls = Calls<CAServiceServer>;
export type DiagCalls = Calls<DiagServiceServer>;

/** What meshctl talks to on meshd's Unix socket: the control API, the CA's join tokens, diagnostics. */
export interface MeshdClients {
  control: ControlCalls;
  ca: CaCalls;
  /** Served by every node, worker too (the other two only by managers). */
  diag: DiagCalls;
  /** `service logs`: a stream; without `follow` it is bounded by the call timeout. */
  subscribeLogs(req: SubscribeLogsRequest): grpc.ClientReadableStream<SubscribeLogsResponse>;
  close(): void;
}

type RawUnary = (
  req: unknown,
  md: grpc.Metadata,
  opts: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => grpc.ClientUnaryCall;

function promised<S>(client: grpc.Client, definition: grpc.ServiceDefinition, timeoutMs: number): Calls<S> {
  const calls: Record<string, (req: unknown) => Promise<unknown>> = {};
  const raw = client as unknown as Record<string, RawUnary>;
  for (const name of Object.keys(definition)) {
    const method = raw[name];
    if (method === undefined) continue;
    calls[name] = (req) =>
      new Promise((resolve, reject) => {
        method.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
          err === null ? resolve(res) : reject(err),
        );
      });
  }
  return calls as unknown as Calls<S>;
}

/** Clients for meshd's local socket; `timeoutMs` bounds every call. */
export function connectSocket(socketPath: string, timeoutMs: number): MeshdClients {
  const target = `unix://${socketPath}`;
  const creds = grpc.credentials.createInsecure();
  const control = new ControlServiceClient(target, creds);
  const ca = new CAServiceClient(target, creds);
  const diag = new DiagServiceClient(target, creds);
  const logs = new LogsServiceClient(target, creds);
  return {
    control: promised<ControlServiceServer>(control, ControlServiceService, timeoutMs),
    ca: promised<CAServiceServer>(ca, CAServiceService, timeoutMs),
    diag: promised<DiagServiceServer>(diag, DiagServiceService, timeoutMs),
    subscribeLogs: (req) =>
      logs.subscribeLogs(req, new grpc.Metadata(), req.follow ? {} : { deadline: Date.now() + timeoutMs }),
    close: () => {
      logs.close();
      control.close();
      ca.close();
      diag.close();
    },
  };
}
