import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Server, type ServiceError, status } from '@grpc/grpc-js';
import { ManagerNode } from '../../../controlplane/manager/manager-node.js';
import {
  addMembershipService,
  LEADER_ADDRESS_METADATA_KEY,
  LEADER_METADATA_KEY,
  LEADER_NODE_ADDRESS_METADATA_KEY,
} from '../../../controlplane/manager/membership-service.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import {
  type JoinRaftResponse,
  RaftMembershipServiceClient,
} from '../../../src/api/gen/meshd/v1/membership.js';
import { Node } from '../../../src/api/gen/meshd/v1/objects.js';
import { mintTlsFixture } from '../raft/transport/tls-fixture.js';
import { waitFor } from './manager-fixture.js';

/** The test certificate's CN is "raft-peer", so the joining manager's Raft ID is "raft-peer". */
describe('RaftMembershipService over mTLS', () => {
  const root = mkdtempSync(join(tmpdir(), 'meshd-msvc-'));
  const cleanup: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const fn of cleanup.reverse()) await fn();
    rmSync(root, { recursive: true, force: true });
  });

  it('a manager joins with JoinRaft as the ID in its certificate; a follower names the leader', async () => {
    const tls = mintTlsFixture();
    const start = async (id: string, bootstrap: boolean, peers: Record<string, string> = {}) => {
      const m = await ManagerNode.start({
        id,
        dataDir: join(root, id),
        listenAddress: '127.0.0.1:0',
        serverCredentials: tls.serverCredentials(),
        channelCredentials: tls.channelCredentials(),
        peers,
        ...(bootstrap ? { bootstrap: { voters: [id], learners: [] } } : {}),
        heartbeatMs: 20,
        electionMs: 300,
        controlLoop: false,
      });
      const server = new Server();
      // The fixture's certificate has no meshd OU/O, so the ID is read from its CN directly.
      addMembershipService(server, m, {
        callerId: (call) => {
          const subject = call.getAuthContext().sslPeerCertificate?.subject as { CN?: string } | undefined;
          return subject?.CN;
        },
      });
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', tls.serverCredentials(), (err, p) =>
          err ? reject(err) : resolve(p),
        ),
      );
      const client = new RaftMembershipServiceClient(`127.0.0.1:${port}`, tls.channelCredentials());
      cleanup.push(async () => {
        client.close();
        server.forceShutdown();
        await m.stop({ transferLeadership: false });
      });
      return { m, client };
    };
    const join_ = (client: RaftMembershipServiceClient, raftAddress: string) =>
      new Promise<JoinRaftResponse>((resolve, reject) =>
        client.joinRaft({ raftAddress }, (err, res) => (err ? reject(err) : resolve(res))),
      );

    const founder = await start('f1', true);
    await waitFor('the founder to lead', 5000, () => (founder.m.isLeader() ? true : undefined));
    await founder.m.proposer.propose(
      new TransactionBuilder(1)
        .create('node', Node.fromPartial({ meta: { id: 'w1' } }))
        .create('node', Node.fromPartial({ meta: { id: 'f1' }, addresses: ['10.0.0.1:4747'] }))
        .build(),
    );
    const joiner = await start('raft-peer', false, { f1: founder.m.members().f1! });

    await assert.rejects(join_(founder.client, 'no-port'), (err: ServiceError) => {
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.match(err.details, /raft_address must be host:port/);
      return true;
    });
    const res = await join_(founder.client, joiner.m.members()['raft-peer']!);
    assert.deepEqual(res.members.map((m) => m.nodeId).sort(), ['f1', 'raft-peer']);
    await waitFor('the joiner to hold the store', 5000, () =>
      joiner.m.store.get('node', 'w1') ? true : undefined,
    );

    await assert.rejects(join_(joiner.client, '127.0.0.1:1'), (err: ServiceError) => {
      assert.equal(err.code, status.UNAVAILABLE);
      assert.deepEqual(err.metadata.get(LEADER_METADATA_KEY), ['f1']);
      assert.deepEqual(err.metadata.get(LEADER_ADDRESS_METADATA_KEY), [founder.m.members().f1]);
      assert.deepEqual(err.metadata.get(LEADER_NODE_ADDRESS_METADATA_KEY), ['10.0.0.1:4747']);
      return true;
    });
  });
});
