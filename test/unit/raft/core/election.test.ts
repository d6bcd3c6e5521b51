import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bytes, clusterWithLogs, noPreVote, ofType, TestCluster } from './helpers.js';

describe('raft §5.2 leader election', () => {
  test('a single-node cluster elects itself and commits a proposal', () => {
    const c = new TestCluster(['1']);
    c.tick('1', 30);
    c.stabilize();
    assert.equal(c.raft('1').role, 'leader');
    c.raft('1').propose(bytes('x'));
    c.stabilize();
    assert.deepEqual(c.appliedData('1'), ['x']);
  });

  test('a follower that times out starts a pre-vote without changing its term (§9.6)', () => {
    const c = new TestCluster(['1', '2', '3']);
    const r = c.raft('1');
    c.tick('1', 2 * r.config.electionTicks);
    const msgs = c.process('1');
    assert.equal(r.role, 'preCandidate');
    assert.equal(r.term, 0);
    assert.equal(ofType(msgs, 'preVote').length, 2);
    assert.ok(ofType(msgs, 'preVote').every((m) => m.term === 1));
  });

  test('a randomized election timeout lies in [electionTicks, 2*electionTicks)', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const c = new TestCluster(['1', '2', '3'], { seed });
      const r = c.raft('1');
      assert.ok(r.randomizedElectionTimeout >= r.config.electionTicks, `seed ${seed}`);
      assert.ok(r.randomizedElectionTimeout < 2 * r.config.electionTicks, `seed ${seed}`);
    }
  });

  test('a stale-term leader steps down when a message carries a higher term', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.partition(['1'], ['2', '3']);
    const old = c.raft('1');
    // The old leader keeps its role while isolated only until check-quorum; disable that here.
    (old.config as { checkQuorum: boolean }).checkQuorum = false;
    c.tickAll(40);
    const next = c.ids().find((id) => id !== '1' && c.raft(id).role === 'leader');
    assert.ok(next !== undefined);
    assert.equal(old.role, 'leader');
    c.heal();
    c.tickAll(2);
    assert.equal(old.role, 'follower');
    assert.equal(old.term, c.raft(next).term);
    assert.equal(old.lead, next);
  });

  test('a node grants one vote per term and its vote is durable (mustSync) before the response is sent', () => {
    const c = new TestCluster(['1', '2', '3'], noPreVote);
    const voter = c.raft('3');
    voter.step({
      type: 'vote',
      from: '1',
      to: '3',
      term: 1,
      lastLogIndex: 0,
      lastLogTerm: 0,
      transfer: false,
    });
    voter.step({
      type: 'vote',
      from: '2',
      to: '3',
      term: 1,
      lastLogIndex: 0,
      lastLogTerm: 0,
      transfer: false,
    });
    const rd = voter.ready();
    const responses = ofType(rd.messages, 'voteResponse');
    assert.deepEqual(
      responses.map((m) => [m.to, m.reject]),
      [
        ['1', false],
        ['2', true],
      ],
    );
    assert.equal(rd.hardState?.vote, '1');
    assert.equal(rd.hardState?.term, 1);
    assert.equal(rd.mustSync, true);
  });

  test('a vote is refused to a candidate whose log is less up to date (§5.4.1)', () => {
    const c = clusterWithLogs({ '1': [1], '2': [1, 2], '3': [1, 2] }, noPreVote);
    const voter = c.raft('2');
    voter.step({
      type: 'vote',
      from: '1',
      to: '2',
      term: 3,
      lastLogIndex: 1,
      lastLogTerm: 1,
      transfer: false,
    });
    voter.step({
      type: 'vote',
      from: '3',
      to: '2',
      term: 4,
      lastLogIndex: 1,
      lastLogTerm: 2,
      transfer: false,
    });
    const responses = ofType(voter.ready().messages, 'voteResponse');
    assert.deepEqual(
      responses.map((m) => m.reject),
      [true, true],
    );
    assert.equal(voter.vote, null);
  });

  test('a split vote resolves: randomized timeouts eventually elect one leader', () => {
    const c = new TestCluster(['1', '2', '3'], noPreVote);
    for (const id of c.ids()) c.raft(id).campaign();
    c.stabilize();
    assert.equal(c.leader(), undefined, 'everyone voted for itself');
    c.tickAll(60);
    const leaders = c.ids().filter((id) => c.raft(id).role === 'leader');
    assert.equal(leaders.length, 1);
  });

  test('dueling candidates: one wins and the other falls back to follower in the same term', () => {
    const c = new TestCluster(['1', '2', '3'], noPreVote);
    c.partition(['1'], ['3']);
    c.raft('1').campaign();
    c.raft('3').campaign();
    c.stabilize();
    assert.equal(c.raft('1').role, 'leader');
    assert.equal(c.raft('3').role, 'candidate');
    c.heal();
    c.tickAll(30);
    assert.equal(c.ids().filter((id) => c.raft(id).role === 'leader').length, 1);
    assert.ok(c.ids().every((id) => c.raft(id).term === c.raft(c.leader()!).term));
  });

  test('a candidate falls back to follower on an AppendEntries of equal term', () => {
    const c = new TestCluster(['1', '2', '3'], noPreVote);
    const r = c.raft('2');
    r.campaign();
    assert.equal(r.role, 'candidate');
    r.step({
      type: 'append',
      from: '1',
      to: '2',
      term: r.term,
      prevLogIndex: 0,
      prevLogTerm: 0,
      entries: [],
      commit: 0,
    });
    assert.equal(r.role, 'follower');
    assert.equal(r.lead, '1');
  });

  test('check-quorum: a leader that hears from no quorum for an election timeout steps down (§6.2)', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.isolate('1');
    for (let i = 0; i < 2 * c.raft('1').config.electionTicks; i++) {
      c.tick('1');
      c.stabilize();
    }
    assert.equal(c.raft('1').role, 'follower');
  });

  test('followers with a live leader ignore vote requests of a higher term', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    const r = c.raft('2');
    const term = r.term;
    r.step({
      type: 'vote',
      from: '3',
      to: '2',
      term: term + 1,
      lastLogIndex: 9,
      lastLogTerm: 9,
      transfer: false,
    });
    assert.equal(r.term, term);
    assert.equal(r.lead, '1');
    assert.equal(ofType(c.process('2'), 'voteResponse').length, 0);
  });

  test('followers with a live leader still vote for a leader-transfer candidate', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    const r = c.raft('2');
    const term = r.term;
    const last = r.log.lastIndex();
    r.step({
      type: 'vote',
      from: '3',
      to: '2',
      term: term + 1,
      lastLogIndex: last,
      lastLogTerm: term,
      transfer: true,
    });
    assert.equal(r.term, term + 1);
    const resp = ofType(c.process('2'), 'voteResponse');
    assert.equal(resp[0]?.reject, false);
  });

  test('pre-vote stops a rejoining partitioned node from disrupting the leader', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    const term = c.raft('1').term;
    c.isolate('3');
    for (let i = 0; i < 5 * c.raft('3').config.electionTicks; i++) {
      c.tick('3');
      c.stabilize();
    }
    assert.equal(c.raft('3').term, term, 'pre-vote never bumps the term of an isolated node');
    c.heal();
    c.tickAll(25);
    assert.equal(c.leader(), '1');
    assert.equal(c.raft('1').term, term);
    assert.equal(c.raft('3').lead, '1');
  });

  test('without pre-vote a rejoining node bumps the term (the problem pre-vote solves)', () => {
    const c = new TestCluster(['1', '2', '3'], noPreVote);
    c.elect('1');
    const term = c.raft('1').term;
    c.isolate('3');
    c.tickAll(40);
    assert.ok(c.raft('3').term > term);
  });

  test('pre-vote with a split vote still elects a leader', () => {
    const c = new TestCluster(['1', '2', '3', '4', '5']);
    for (const id of c.ids()) c.raft(id).campaign();
    c.stabilize();
    c.tickAll(80);
    assert.equal(c.ids().filter((id) => c.raft(id).role === 'leader').length, 1);
  });

  test('a lower-term append is answered with the current term so a stale leader learns it', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    const r = c.raft('2');
    r.step({ type: 'heartbeat', from: '1', to: '2', term: 5, commit: 0, context: new Uint8Array() });
    c.process('2');
    r.step({
      type: 'append',
      from: '3',
      to: '2',
      term: 3,
      prevLogIndex: 0,
      prevLogTerm: 0,
      entries: [],
      commit: 0,
    });
    r.step({ type: 'heartbeat', from: '3', to: '2', term: 3, commit: 0, context: new Uint8Array() });
    const resp = ofType(c.process('2'), 'appendResponse').filter((m) => m.to === '3');
    assert.equal(resp.length, 2);
    assert.ok(resp.every((m) => m.term === 5));
  });
});
