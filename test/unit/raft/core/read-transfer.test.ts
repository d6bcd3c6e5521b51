import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bytes, ofType, TestCluster } from './helpers.js';

describe('raft §6.4 ReadIndex', () => {
  test('ReadIndex on a new leader waits until it commits an entry of its own term', () => {
    const c = new TestCluster(['1', '2', '3']);
    const r = c.raft('1');
    r.campaign();
    // Run the election but hold back every append so the term's first entry cannot commit.
    for (let i = 0; i < 10; i++) {
      c.processAll();
      c.drop((m) => m.type === 'append');
      c.deliver();
    }
    assert.equal(r.role, 'leader');
    r.readIndex(bytes('ctx'));
    c.processAll();
    assert.equal(c.node('1').readStates.length, 0);
    c.tickAll(2);
    assert.ok(r.log.committed > 0);
    assert.deepEqual(
      c.node('1').readStates.map((s) => [s.index, new TextDecoder().decode(s.context)]),
      [[r.log.committed, 'ctx']],
    );
  });

  test('ReadIndex is answered only after a quorum of heartbeat acks, with the commit index', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    const r = c.raft('1');
    r.propose(bytes('a'));
    c.stabilize();
    r.readIndex(bytes('r1'));
    const beats = ofType(c.process('1'), 'heartbeat');
    assert.equal(beats.length, 2);
    assert.ok(beats.every((b) => new TextDecoder().decode(b.context) === 'r1'));
    assert.equal(c.node('1').readStates.length, 0, 'not before acks');
    c.stabilize();
    assert.equal(c.node('1').readStates[0]?.index, r.log.committed);
  });

  test('an old leader cut off from the quorum does not serve ReadIndex', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.isolate('1');
    c.raft('1').readIndex(bytes('stale'));
    for (let i = 0; i < 30; i++) {
      for (const id of c.ids()) c.tick(id);
      c.stabilize();
    }
    assert.equal(c.node('1').readStates.length, 0);
  });

  test('ReadIndex on a follower is forwarded to the leader and answered', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.raft('1').propose(bytes('a'));
    c.stabilize();
    c.raft('3').readIndex(bytes('f'));
    c.stabilize();
    assert.equal(c.node('3').readStates[0]?.index, c.raft('1').log.committed);
  });
});

describe('raft §3.10 leader transfer', () => {
  test('transfer to an up-to-date follower sends TimeoutNow and the target wins', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.raft('1').transferLeader('3');
    const sent = c.process('1');
    assert.equal(ofType(sent, 'timeoutNow')[0]?.to, '3');
    c.stabilize();
    assert.equal(c.leader(), '3');
    assert.equal(c.raft('1').role, 'follower');
  });

  test('transfer to a slow follower catches it up before TimeoutNow', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.isolate('3');
    for (const d of ['a', 'b', 'c']) c.raft('1').propose(bytes(d));
    c.stabilize();
    c.heal();
    c.raft('1').transferLeader('3');
    const first = c.process('1');
    assert.equal(ofType(first, 'timeoutNow').length, 0, 'not yet up to date');
    c.tickAll(3);
    assert.equal(c.leader(), '3');
    assert.deepEqual(c.appliedData('3'), ['a', 'b', 'c']);
  });

  test('a transfer that does not finish within an election timeout is abandoned', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.isolate('3');
    const r = c.raft('1');
    r.transferLeader('3');
    assert.equal(r.leadTransferee, '3');
    for (let i = 0; i < r.config.electionTicks; i++) {
      c.tick('1');
      c.stabilize();
    }
    assert.equal(r.leadTransferee, null);
    assert.equal(r.role, 'leader');
    r.propose(bytes('after'));
  });

  test('proposals are dropped while a transfer is in progress', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.isolate('3');
    c.raft('1').transferLeader('3');
    assert.throws(() => c.raft('1').propose(bytes('x')), { code: 'RAFT_PROPOSAL_DROPPED' });
  });

  test('a transfer to self or to an unknown node is a no-op', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.raft('1').transferLeader('1');
    c.raft('1').transferLeader('9');
    assert.equal(c.raft('1').leadTransferee, null);
    assert.equal(ofType(c.process('1'), 'timeoutNow').length, 0);
    assert.equal(c.leader(), '1');
  });

  test('a transfer requested on a follower is forwarded to the leader', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.raft('2').transferLeader('2');
    c.stabilize();
    assert.equal(c.leader(), '2');
  });
});
