import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ManagerNode } from '../../../controlplane/manager/manager-node.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { Node, NodeRole, NodeState } from '../../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../../src/common/errors.js';
import { mintTlsFixture, type TlsFixture } from '../raft/transport/tls-fixture.js';
import { waitFor } from './manager-fixture.js';

const node = (id: string) =>
  Node.fromPartial({ meta: { id }, hostname: `h-${id}`, state: NodeState.NODE_STATE_READY });

/** A founder alone, then managers that join through addManager (as `meshd join` as a manager does). */
describe('ManagerNode membership', () => {
  const root = mkdtempSync(join(tmpdir(), 'meshd-members-'));
  const running = new Map<string, ManagerNode>();
  let tls: TlsFixture;
  before(() => {
    tls = mintTlsFixture();
  });
  after(async () => {
    for (const m of running.values()) await m.stop({ transferLeadership: false });
    rmSync(root, { recursive: true, force: true });
  });

  const start = async (id: string, peers: Record<string, string>, bootstrap: boolean) => {
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
      requestTimeoutMs: 5000,
      controlLoop: false,
    });
    running.set(id, m);
    return m;
  };

  it('managers join a founder one at a time, receive the store, keep it after the founder dies, and a demoted one leaves the voters', async () => {
    const founder = await start('f1', {}, true);
    await waitFor('the founder to lead', 5000, () => (founder.isLeader() ? true : undefined));
    await founder.proposer.propose(new TransactionBuilder(1000).create('node', node('w1')).build());
    const founderAddress = founder.members().f1!;

    const m2 = await start('j2', { f1: founderAddress }, false);
    await assert.rejects(
      m2.addManager('x', '127.0.0.1:1'),
      (err) => err instanceof MeshError && err.code === 'NOT_LEADER',
    );
    await founder.addManager('j2', m2.members().j2!);
    // The founder comes from the log's first entries: a joiner that missed it would think itself alone.
    await waitFor('j2 to see both voters', 5000, () =>
      m2.raft.status().confState.voters.join() === 'f1,j2' ? true : undefined,
    );
    const m3 = await start('j3', { f1: founderAddress }, false);
    const members = await founder.addManager('j3', m3.members().j3!);
    assert.deepEqual(Object.keys(members).sort(), ['f1', 'j2', 'j3']);
    await waitFor('j3 to hold the store', 5000, () => (m3.store.get('node', 'w1') ? true : undefined));
    assert.equal(m3.members().j2, m2.members().j2, 'j3 learned j2 through the replicated conf change');

    await founder.stop({ transferLeadership: false });
    running.delete('f1');
    const next = await waitFor('a leader among the joiners', 10_000, () =>
      [m2, m3].find((m) => m.isLeader()),
    );
    await next.proposer.propose(new TransactionBuilder(2000).create('node', node('w2')).build());
    await next.removeManager('f1');
    assert.deepEqual(next.raft.status().confState.voters.slice().sort(), ['j2', 'j3']);

    // `node demote`: the Node object says worker, the leader removes the voter.
    const other = next === m2 ? 'j3' : 'j2';
    await next.proposer.propose(
      new TransactionBuilder(3000)
        .create(
          'node',
          Node.fromPartial({ meta: { id: other }, hostname: other, role: NodeRole.NODE_ROLE_WORKER }),
        )
        .build(),
    );
    await waitFor(`${other} to leave the voters`, 5000, () =>
      next.raft.status().confState.voters.includes(other) ? undefined : true,
    );
  });

  it('a demoted leader of 2 voters hands leadership over and stays until removed; the survivor then commits alone', async () => {
    const a = await start('a1', {}, true);
    await waitFor('a1 to lead', 5000, () => (a.isLeader() ? true : undefined));
    const b = await start('b2', { a1: a.members().a1! }, false);
    await a.addManager('b2', b.members().b2!);
    assert.deepEqual(a.raft.status().confState.voters, ['a1', 'b2']);
    // `node demote a1`: its Node object turns worker; only another leader may remove it.
    await a.proposer.propose(
      new TransactionBuilder(4000)
        .create(
          'node',
          Node.fromPartial({ meta: { id: 'a1' }, hostname: 'a1', role: NodeRole.NODE_ROLE_WORKER }),
        )
        .create(
          'node',
          Node.fromPartial({ meta: { id: 'b2' }, hostname: 'b2', role: NodeRole.NODE_ROLE_MANAGER }),
        )
        .build(),
    );
    assert.equal(await a.leaveRaft(10_000), true, 'a1 left Raft');
    assert.ok(b.isLeader(), 'b2 took over');
    assert.deepEqual(b.raft.status().confState.voters, ['b2']);
    await a.stop({ transferLeadership: false });
    running.delete('a1');
    await b.proposer.propose(new TransactionBuilder(5000).create('node', node('w9')).build());
  });
});
