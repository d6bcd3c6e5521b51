import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { otherManagerHosts, readReplicaOffline } from '../../../controlplane/manager/offline-replica.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { Node, NodeRole } from '../../../src/api/gen/meshd/v1/objects.js';
import { ManagerCluster } from './manager-fixture.js';

describe('reading a stopped manager replica', () => {
  const cluster = new ManagerCluster({ controlLoop: false });
  before(async () => {
    await cluster.start();
  });
  after(async () => {
    await cluster.close();
  });

  test('a stopped manager replica holds every commit it saw: the other managers are found offline', async () => {
    const leader = await cluster.leader();
    const node = (id: string, role: NodeRole, address: string) =>
      Node.fromPartial({ meta: { id }, hostname: id, role, addresses: [address] });
    await leader.proposer.propose(
      new TransactionBuilder(Date.now())
        .create('node', node('m1', NodeRole.NODE_ROLE_MANAGER, '10.0.0.1'))
        .create('node', node('m2', NodeRole.NODE_ROLE_MANAGER, '10.0.0.2'))
        .create('node', node('m3', NodeRole.NODE_ROLE_MANAGER, '10.0.0.3'))
        .create('node', node('w1', NodeRole.NODE_ROLE_WORKER, '10.0.0.9'))
        .build(),
    );
    const m3 = cluster.managers.get('m3')!;
    await m3.linearizableRead();
    await cluster.stopOne('m3');
    const replica = await readReplicaOffline(join(cluster.root, 'm3'));
    assert.equal(replica.store.list('node').length, 4);
    assert.deepEqual(otherManagerHosts(replica, 'm3').sort(), ['10.0.0.1', '10.0.0.2']);
  });
});
