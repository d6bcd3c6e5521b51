import * as grpc from '@grpc/grpc-js';
import {
  LogsServiceClient,
  type LogsServiceServer,
  type SubscribeLogsResponse,
} from '../../src/api/gen/meshd/v1/logs.js';
import { SECURE_CHANNEL_OPTIONS } from '../../src/common/transport/credentials.js';
import type { LogBroker } from './server.js';

export interface LeaderRoute {
  isLeader(): boolean;
  /** The leader's mTLS address (host:port), when known. */
  leaderAddress(): string | undefined;
  /** Manager client credentials (the leader's LOGS_POLICY wants a manager certificate). */
  credentials(): grpc.ChannelCredentials;
}

/**
 * LogsService for the local socket: the leader serves it from its broker; a
 * follower relays the call to the leader (whose agents listen there) and the
 * leader's stream back, one message at a time: the relay pauses the
 * leader's stream while meshctl's side is full, so nothing queues here.
 */
export function localLogsService(broker: LogBroker, route: LeaderRoute): LogsServiceServer {
  const served = broker.logsImplementation();
  return {
    subscribeLogs: (call) => {
      if (route.isLeader()) {
        served.subscribeLogs(call);
        return;
      }
      const leader = route.leaderAddress();
      if (leader === undefined) {
        call.emit('error', {
          code: grpc.status.UNAVAILABLE,
          details: 'no leader is known (the managers may be electing one); retry in a few seconds',
          metadata: new grpc.Metadata(),
        });
        return;
      }
      const client = new LogsServiceClient(leader, route.credentials(), SECURE_CHANNEL_OPTIONS);
      const upstream = client.subscribeLogs(call.request);
      const stop = () => {
        upstream.cancel();
        client.close();
      };
      call.on('cancelled', stop);
      upstream.on('data', (msg: SubscribeLogsResponse) => {
        if (call.writableEnded) return;
        if (!call.write(msg)) {
          upstream.pause();
          call.once('drain', () => upstream.resume());
        }
      });
      upstream.on('end', () => {
        client.close();
        if (!call.writableEnded) call.end();
      });
      upstream.on('error', (err: grpc.ServiceError) => {
        client.close();
        if (err.code === grpc.status.CANCELLED || call.writableEnded) return;
        call.emit('error', {
          code: err.code,
          details: `${err.details || err.message} (forwarded to the leader at ${leader})`,
          metadata: new grpc.Metadata(),
        });
      });
    },
  };
}

/** LogsService on the managers' mTLS listener: only the leader answers (no second hop). */
export function leaderOnlyLogsService(
  broker: LogBroker,
  route: Pick<LeaderRoute, 'isLeader'>,
): LogsServiceServer {
  const served = broker.logsImplementation();
  return {
    subscribeLogs: (call) => {
      if (route.isLeader()) served.subscribeLogs(call);
      else
        call.emit('error', {
          code: grpc.status.UNAVAILABLE,
          details: 'this manager is no longer the leader; retry',
          metadata: new grpc.Metadata(),
        });
    },
  };
}
