import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bytes, ofType, TestCluster } from './helpers.js';

function settle(c: TestCluster, ticks = 3): void {
  c.stabilize();
  c.tickAll(ticks);
}

describe('raft §4 membership changes', () => {
  test('a new voter joins with an empty log and catches up from the leader', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.raft('1').propose(bytes('before'));
    settle(c);
    // A joiner starts from the membership it was given when joining (as swarm's join does).
    c.addNode('4', { voters: ['1', '2', '3'], learners: [] });
    c.raft('1').proposeConfChange({ type: 'addVoter', nodeId: '4' });
    settle(c);
    c.raft('1').propose(bytes('after'));
    settle(c);
    assert.deepEqual(c.appliedData('4'), ['before', 'after']);
    assert.deepEqual(c.raft('4').tracker.confState().voters, ['1', '2', '3', '4']);
    assert.deepEqual(c.raft('1').tracker.confState().voters, ['1', '2', '3', '4']);
  });

  test('only one conf change may be pending at a time', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    settle(c);
    c.raft('1').proposeConfChange({ type: 'addLearner', nodeId: '4' });
    assert.throws(() => c.raft('1').proposeConfChange({ type: 'addLearner', nodeId: '5' }), {
      code: 'RAFT_PROPOSAL_DROPPED',
    });
    settle(c);
    c.raft('1').proposeConfChange({ type: 'addLearner', nodeId: '5' });
  });

  test('a new leader refuses conf changes until an entry of its term is applied', () => {
    const c = new TestCluster(['1', '2', '3']);
    const r = c.raft('1');
    r.campaign();
    for (let i = 0; i < 10; i++) {
      c.processAll();
      c.drop((m) => m.type === 'append');
      c.deliver();
    }
    assert.equal(r.role, 'leader');
    assert.throws(() => r.proposeConfChange({ type: 'addLearner', nodeId: '4' }), {
      code: 'RAFT_PROPOSAL_DROPPED',
    });
  });

  test('removing a voter lowers the quorum and unblocks a commit waiting on it', () => {
    const c = new TestCluster(['1', '2', '3', '4']);
    c.elect('1');
    settle(c);
    const r = c.raft('1');
    r.proposeConfChange({ type: 'removeNode', nodeId: '4' });
    c.process('1');
    c.drop((m) => m.to === '4');
    c.deliver();
    c.process('2');
    c.process('3');
    c.deliver();
    const removalIndex = r.log.lastIndex();
    assert.equal(r.log.committed, removalIndex, 'removal committed by 1,2,3');
    // Before the leader applies the removal, X reaches only node 2: 2 of 4 is no quorum.
    c.cut.add('1->3');
    c.cut.add('1->4');
    r.propose(bytes('X'));
    c.inFlight.push(...r.messages.splice(0));
    c.deliver();
    c.process('2');
    c.deliver();
    assert.equal(r.log.committed, removalIndex);
    // Applying the removal (advance) recounts with voters {1,2,3}: 2 of 3 commits X.
    c.process('1');
    assert.equal(r.log.committed, removalIndex + 1);
  });

  test('removing the leader: it steps down and the others elect a leader that commits', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    settle(c);
    c.raft('1').proposeConfChange({ type: 'removeNode', nodeId: '1' });
    settle(c, 1);
    assert.notEqual(c.raft('1').role, 'leader');
    c.tickAll(40);
    const leader = c.leader();
    assert.ok(leader === '2' || leader === '3', `leader is ${leader}`);
    c.raft(leader).propose(bytes('without-1'));
    settle(c);
    assert.deepEqual(c.appliedData('2'), ['without-1']);
    assert.deepEqual(c.raft(leader).tracker.confState().voters, ['2', '3']);
  });

  test('a removal that would leave the new configuration without a reachable quorum is refused', () => {
    const c = new TestCluster(['1', '2', '3', '4', '5']);
    c.elect('1');
    settle(c);
    c.partition(['1', '2', '5'], ['3', '4']);
    c.tickAll(2 * c.raft('1').config.electionTicks);
    assert.equal(c.leader(), '1');
    assert.throws(() => c.raft('1').proposeConfChange({ type: 'removeNode', nodeId: '5' }), {
      code: 'INVALID_ARGUMENT',
    });
    c.raft('1').proposeConfChange({ type: 'removeNode', nodeId: '4' });
  });

  test('learners replicate the log but neither count for commit nor campaign', () => {
    const c = new TestCluster(['1', '2', '3'], { learners: ['4'] });
    c.elect('1');
    c.raft('1').propose(bytes('a'));
    settle(c);
    assert.deepEqual(c.appliedData('4'), ['a']);
    c.partition(['1', '4'], ['2', '3']);
    const committed = c.raft('1').log.committed;
    c.raft('1').propose(bytes('b'));
    c.stabilize();
    assert.equal(c.raft('4').log.lastIndex(), c.raft('1').log.lastIndex(), 'learner has b');
    assert.equal(c.raft('1').log.committed, committed, 'learner ack does not commit');
    c.heal();
    c.isolate('4');
    for (let i = 0; i < 60; i++) c.tick('4');
    assert.equal(ofType(c.process('4'), 'preVote').length, 0);
    assert.equal(c.raft('4').role, 'follower');
  });

  test('a learner promoted to voter counts toward the quorum', () => {
    const c = new TestCluster(['1', '2', '3'], { learners: ['4'] });
    c.elect('1');
    settle(c);
    c.raft('1').proposeConfChange({ type: 'addVoter', nodeId: '4' });
    settle(c);
    assert.deepEqual(c.raft('1').tracker.confState(), { voters: ['1', '2', '3', '4'], learners: [] });
    assert.equal(c.raft('1').tracker.progress.get('4')?.isLearner, false);
  });

  test('a conf change proposed on a follower is forwarded and applied everywhere', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    settle(c);
    c.raft('2').proposeConfChange({ type: 'addLearner', nodeId: '9' });
    settle(c);
    for (const id of c.ids()) assert.deepEqual(c.raft(id).tracker.confState().learners, ['9']);
  });

  test('a removed node that never learned of its removal does not disrupt the cluster (§4.2.3)', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    settle(c);
    c.isolate('3');
    c.raft('1').proposeConfChange({ type: 'removeNode', nodeId: '3' });
    settle(c);
    assert.deepEqual(c.raft('1').tracker.confState().voters, ['1', '2']);
    const term = c.raft('1').term;
    c.heal();
    c.cut.add('1->3'); // 3 hears nothing from the leader, so it keeps campaigning
    c.tickAll(60);
    assert.equal(c.leader(), '1');
    assert.equal(c.raft('1').term, term);
    assert.equal(c.raft('2').term, term);
  });

  test('a conf change handed out by one of two ready() calls before advance() still takes effect', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    settle(c);
    const r = c.raft('1');
    r.proposeConfChange({ type: 'addLearner', nodeId: '7' });
    c.process('1');
    c.deliver();
    c.process('2');
    c.process('3');
    c.deliver();
    c.process('1');
    c.drop(() => true);
    assert.equal(r.log.committed, r.log.lastIndex());
    // Node 2 learns the commit through a heartbeat, then its caller calls ready() twice.
    const f = c.raft('2');
    f.step({
      type: 'heartbeat',
      from: '1',
      to: '2',
      term: r.term,
      commit: r.log.committed,
      context: new Uint8Array(),
    });
    const first = f.ready();
    assert.equal(first.committedEntries.filter((e) => e.type === 'confChange').length, 1);
    f.ready();
    f.advance();
    assert.deepEqual(f.tracker.confState().learners, ['7']);
  });
});
