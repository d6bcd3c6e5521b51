import { Metadata, type Server, type ServiceError, status } from '@grpc/grpc-js';
import {
  type JoinRaftRequest,
  type JoinRaftResponse,
  type LeaveRaftResponse,
  type RaftMembershipServiceServer,
  RaftMembershipServiceService,
} from '../../src/api/gen/meshd/v1/membership.js';
import { errorMessage, MeshError, ValidationError } from '../../src/common/errors.js';
import { callerIdentity } from '../../src/common/transport/authorization.js';
import type { ManagerNode } from './manager-node.js';

export const LEADER_METADATA_KEY = 'meshd-leader';
export const LEADER_ADDRESS_METADATA_KEY = 'meshd-leader-address';
/** The leader's advertised node address (its Node object's first address), where its gRPC services listen. */
export const LEADER_NODE_ADDRESS_METADATA_KEY = 'meshd-leader-node-address';

type Call =
  | Parameters<RaftMembershipServiceServer['joinRaft']>[0]
  | Parameters<RaftMembershipServiceServer['leaveRaft']>[0];

export interface MembershipServiceOptions {
  /** The caller's node ID; default: the CN of its verified certificate. */
  callerId?: (call: Call) => string | undefined;
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/**
 * RaftMembershipService over a ManagerNode: JoinRaft makes the calling
 * manager (identified by its certificate, never by the request) a learner,
 * promoted to voter by the leader once caught up; LeaveRaft removes it. Served by every manager; only the leader changes
 * membership, the others say who the leader is.
 */
export function membershipServiceImplementation(
  manager: ManagerNode,
  opts: MembershipServiceOptions = {},
): RaftMembershipServiceServer {
  const idOf = opts.callerId ?? ((call: Call) => callerIdentity(call)?.nodeId);
  const handle = <Res>(
    call: Call,
    cb: (err: Partial<ServiceError> | null, res?: Res) => void,
    fn: (id: string) => Promise<Res>,
  ) => {
    const id = idOf(call);
    if (id === undefined || id === '') {
      cb({
        code: status.UNAUTHENTICATED,
        details: 'a manager certificate is required to change Raft membership',
      });
      return;
    }
    fn(id).then(
      (res) => cb(null, res),
      (err: unknown) => cb(membershipError(manager, err)),
    );
  };
  return {
    joinRaft: (call, cb) =>
      handle<JoinRaftResponse>(call, cb, async (id) => {
        const address = (call.request as JoinRaftRequest).raftAddress;
        const m = HOST_PORT.exec(address);
        if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535)
          throw new ValidationError(
            'raft_address',
            `raft_address must be host:port with a port 1..65535, got "${address}"`,
          );
        // A learner first: the caller needs the members' addresses (this answer)
        // to catch up, and the leader makes it a voter once it has.
        const members = await manager.addLearner(id, address);
        return { members: Object.entries(members).map(([nodeId, raftAddress]) => ({ nodeId, raftAddress })) };
      }),
    leaveRaft: (call, cb) =>
      handle<LeaveRaftResponse>(call, cb, async (id) => {
        await manager.removeManager(id);
        return {};
      }),
  };
}

export function addMembershipService(
  server: Server,
  manager: ManagerNode,
  opts: MembershipServiceOptions = {},
): void {
  server.addService(RaftMembershipServiceService, membershipServiceImplementation(manager, opts));
}

function membershipError(manager: ManagerNode, err: unknown): Partial<ServiceError> {
  const metadata = new Metadata();
  const details = errorMessage(err).split('\n')[0]!;
  if (!(err instanceof MeshError)) return { code: status.INTERNAL, details, metadata };
  switch (err.code) {
    case 'NOT_LEADER': {
      const leader = manager.leaderId();
      if (leader !== null) {
        metadata.set(LEADER_METADATA_KEY, leader);
        const address = manager.members()[leader];
        if (address !== undefined) metadata.set(LEADER_ADDRESS_METADATA_KEY, address);
        const nodeAddress = manager.store.get('node', leader)?.addresses[0];
        if (nodeAddress !== undefined) metadata.set(LEADER_NODE_ADDRESS_METADATA_KEY, nodeAddress);
      }
      return { code: status.UNAVAILABLE, details, metadata };
    }
    case 'INVALID_ARGUMENT':
      return { code: status.INVALID_ARGUMENT, details, metadata };
    case 'FAILED_PRECONDITION':
      return { code: status.FAILED_PRECONDITION, details, metadata };
    default:
      return { code: err.code.startsWith('RAFT_') ? status.UNAVAILABLE : status.INTERNAL, details, metadata };
  }
}
