import {
  type ChannelCredentials,
  Server,
  type ServerCredentials,
  type ServerReadableStream,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import {
  RaftServiceClient,
  RaftServiceService,
  RaftServiceStreamRequest,
  type RaftServiceStreamResponse,
} from '../../../src/api/gen/meshd/v1/raft.js';
import { errorMessage, MeshError, ValidationError } from '../../../src/common/errors.js';
import { subsystemLogger } from '../../../src/common/logger.js';
import type { NodeId, RaftMessage } from '../core/types.js';
import { PeerSender } from './peer-sender.js';
import { DEFAULT_WIRE_LIMITS, fromWire, type WireLimits } from './wire.js';

/**
 * Raft messages between managers over gRPC: one client stream per peer,
 * ordered, batched (everything queued while a write is in flight goes in one
 * request). The send side never blocks Raft: each peer has a bounded queue
 * and a message that does not fit is dropped (Raft retransmits), and a
 * failed stream is reported to the core as an unreachable peer.
 */
export interface TransportHandler {
  onMessage(message: RaftMessage): void;
  onUnreachable(peer: NodeId): void;
  onSnapshotStatus(peer: NodeId, ok: boolean): void;
}

export interface GrpcTransportOptions {
  selfId: NodeId;
  /** Address to listen on, e.g. "127.0.0.1:0" (the OS picks the port). */
  listenAddress: string;
  serverCredentials: ServerCredentials;
  channelCredentials: ChannelCredentials;
  handler: TransportHandler;
  /** Peers as id → "host:port". */
  peers?: Record<NodeId, string>;
  /** Max messages queued per peer before new ones are dropped. */
  maxQueuedMessages?: number;
  /** Max bytes (approximate) queued per peer before new ones are dropped. */
  maxQueuedBytes?: number;
  /** Largest gRPC message accepted or sent. */
  maxMessageBytes?: number;
  /** After a stream fails, messages to that peer are dropped for this long. */
  reconnectBackoffMs?: number;
  limits?: WireLimits;
  /** TLS name to check on peers' certificates (tests on 127.0.0.1 pass the cert's name). */
  tlsServerName?: string;
}

const DEFAULTS = {
  maxQueuedMessages: 4096,
  maxQueuedBytes: 64 * 1024 * 1024,
  maxMessageBytes: 64 * 1024 * 1024,
  reconnectBackoffMs: 100,
};

const log = subsystemLogger('raft-transport');

type DecodedRequest = RaftServiceStreamRequest & { decodeError?: string };

/**
 * The generated service, except that bytes which are not a protobuf
 * message reach the handler as a decodeError (so the stream is refused with
 * a logged reason) instead of failing inside grpc-js without a word.
 */
const TOLERANT_SERVICE = {
  stream: {
    ...RaftServiceService.stream,
    requestDeserialize: (value: Buffer): DecodedRequest => {
      try {
        return RaftServiceStreamRequest.decode(value);
      } catch (err) {
        return { messages: [], decodeError: errorMessage(err) };
      }
    },
  },
};

export class GrpcTransport {
  readonly opts: Required<Omit<GrpcTransportOptions, 'peers' | 'tlsServerName'>> &
    Pick<GrpcTransportOptions, 'tlsServerName'>;
  readonly handler: TransportHandler;
  private readonly server: Server;
  private readonly senders = new Map<NodeId, PeerSender>();
  private readonly removed = new Set<NodeId>();
  private readonly addresses = new Map<NodeId, string>();
  private port = 0;
  private channelCredentials: ChannelCredentials;

  constructor(options: GrpcTransportOptions) {
    this.opts = {
      ...DEFAULTS,
      limits: DEFAULT_WIRE_LIMITS,
      ...options,
    };
    this.handler = options.handler;
    this.channelCredentials = options.channelCredentials;
    this.server = new Server({
      'grpc.max_receive_message_length': this.opts.maxMessageBytes,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    this.server.addService(TOLERANT_SERVICE, {
      stream: (
        call: ServerReadableStream<RaftServiceStreamRequest, RaftServiceStreamResponse>,
        cb: sendUnaryData<RaftServiceStreamResponse>,
      ) => this.serveStream(call, cb),
    });
    for (const [id, address] of Object.entries(options.peers ?? {})) this.addPeer(id, address);
  }

  /** Binds the server; returns the port (useful with port 0). */
  start(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(this.opts.listenAddress, this.opts.serverCredentials, (err, port) => {
        if (err !== null) {
          reject(
            new MeshError(
              'RAFT_LISTEN_FAILED',
              `raft transport: cannot listen on ${this.opts.listenAddress}: ${err.message}`,
            ),
          );
          return;
        }
        this.port = port;
        resolve(port);
      });
    });
  }

  boundPort(): number {
    return this.port;
  }

  /** Adds or re-addresses a peer; the same address again keeps the open stream. */
  addPeer(id: NodeId, address: string): void {
    if (id === this.opts.selfId || this.addresses.get(id) === address) return;
    this.addresses.set(id, address);
    this.senders.get(id)?.close();
    const channelOptions: Record<string, string | number> = {
      'grpc.max_send_message_length': this.opts.maxMessageBytes,
      'grpc.max_receive_message_length': this.opts.maxMessageBytes,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    };
    if (this.opts.tlsServerName !== undefined)
      channelOptions['grpc.ssl_target_name_override'] = this.opts.tlsServerName;
    const client = new RaftServiceClient(address, this.channelCredentials, channelOptions);
    this.senders.set(id, new PeerSender(id, client, this));
  }

  /**
   * Client credentials after the node's certificate was renewed: every peer
   * gets a new channel. A channel keeps the certificate it was made with, so
   * its next reconnect would present an expired or retired one and be refused.
   */
  setChannelCredentials(credentials: ChannelCredentials): void {
    this.channelCredentials = credentials;
    for (const [id, address] of [...this.addresses]) {
      this.addresses.delete(id);
      this.addPeer(id, address);
    }
  }

  /** Accepts streams from `id` again (it was added back by a conf change). */
  readmitPeer(id: NodeId): void {
    this.removed.delete(id);
  }

  /** Stops sending to `id` and refuses its streams from now on (it left the cluster). */
  removePeer(id: NodeId): void {
    this.removed.add(id);
    this.addresses.delete(id);
    this.senders.get(id)?.close();
    this.senders.delete(id);
  }

  /** Queue depth and drop count for one peer (metrics, tests). */
  peerStats(id: NodeId): { queued: number; dropped: number } | undefined {
    return this.senders.get(id)?.stats();
  }

  send(messages: readonly RaftMessage[]): void {
    for (const m of messages) {
      const sender = this.senders.get(m.to);
      if (sender === undefined) {
        log.debug({ to: m.to, type: m.type }, 'no address for raft peer; message dropped');
        this.handler.onUnreachable(m.to);
        continue;
      }
      sender.send(m);
    }
  }

  private serveStream(
    call: ServerReadableStream<RaftServiceStreamRequest, RaftServiceStreamResponse>,
    cb: sendUnaryData<RaftServiceStreamResponse>,
  ): void {
    let received = 0;
    let streamFrom: NodeId | undefined;
    let finished = false;
    const finish = (code: status | null, reason?: string) => {
      if (finished) return;
      finished = true;
      if (code === null) {
        cb(null, { receivedMessages: received });
        return;
      }
      log.warn({ peer: streamFrom ?? call.getPeer(), reason }, 'dropping raft peer stream');
      cb({ code, details: reason ?? 'rejected' });
    };
    call.on('data', (req: DecodedRequest) => {
      if (finished) return;
      if (req.decodeError !== undefined) {
        finish(status.INVALID_ARGUMENT, `undecodable raft request: ${req.decodeError}`);
        return;
      }
      for (const w of req.messages) {
        let m: RaftMessage;
        try {
          m = fromWire(w, this.opts.limits);
        } catch (err) {
          const field = err instanceof ValidationError ? err.field : 'message';
          finish(status.INVALID_ARGUMENT, `malformed raft message (${field}): ${errorMessage(err)}`);
          return;
        }
        if (m.to !== this.opts.selfId) {
          finish(status.INVALID_ARGUMENT, `raft message for "${m.to}" arrived at "${this.opts.selfId}"`);
          return;
        }
        if (streamFrom !== undefined && m.from !== streamFrom) {
          finish(
            status.INVALID_ARGUMENT,
            `raft stream from "${streamFrom}" carried a message from "${m.from}"`,
          );
          return;
        }
        streamFrom = m.from;
        if (this.removed.has(m.from)) {
          finish(status.PERMISSION_DENIED, `raft message from removed member "${m.from}"`);
          return;
        }
        received += 1;
        try {
          this.handler.onMessage(m);
        } catch (err) {
          log.error({ peer: m.from, err: errorMessage(err) }, 'raft handler failed on a peer message');
        }
      }
    });
    call.on('end', () => finish(null));
    call.on('error', (err) => {
      if (!finished) log.debug({ peer: streamFrom, err: errorMessage(err) }, 'raft peer stream error');
      finished = true;
    });
  }

  async close(): Promise<void> {
    for (const s of this.senders.values()) s.close();
    this.senders.clear();
    await new Promise<void>((resolve) => {
      this.server.tryShutdown(() => resolve());
      // Peers that never end their streams must not hold shutdown forever.
      setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 500).unref();
    });
  }
}
