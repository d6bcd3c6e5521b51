import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { learnersReadyToPromote } from '../../../../controlplane/raft/core/membership.js';
import type { Raft } from '../../../../controlplane/raft/core/raft.js';
import type { RaftMessage } from '../../../../controlplane/raft/core/types.js';
import { bytes, TestCluster } from './helpers.js';

const LAG = 64;

/** The promotion rule applied to a core's status (the driver feeds it the same fields). */
function readyLearners(r: Raft): string[] {
  const s = r.status();
  return learnersReadyToPromote(
    {
      role: s.softState.role,
      commit: s.hardState.commit,
      confState: s.confState,
      ...(s.progress === undefined ? {} : { progress: s.progress }),
    },
    LAG,
  );
}

const campaigns = (messages: RaftMessage[], from: string) =>
  messages.filter((m) => m.from === from && (m.type === 'preVote' || m.type === 'vote'));

/**
 * Node 3 gets the entry that removes it but never its commit: it keeps its
 * old configuration and a log as long as anyone's, so its campaign looks
 * legitimate to a voter that does not check membership.
 */
function clusterWithRemovedNode(config: { preVote: boolean; checkQuorum: boolean }): TestCluster {
  const c = new TestCluster(['1', '2', '3'], { config });
  c.elect('1');
  c.stabilize();
  c.raft('1').proposeConfChange({ type: 'removeNode', nodeId: '3' });
  c.process('1');
  c.deliver();
  c.processAll();
  c.deliver();
  c.cut.add('1->3');
  c.cut.add('2->3');
  c.stabilize();
  c.tickAll(2);
  assert.deepEqual(c.raft('2').tracker.confState().voters, ['1', '2']);
  assert.ok(c.raft('3').tracker.voters.has('3'), '3 still believes it is a voter');
  assert.equal(c.raft('3').log.lastIndex(), c.raft('1').log.lastIndex(), '3 has the removal entry');
  // The leader sends 3 nothing any more; 3 hears only answers to its own requests.
  c.heal();
  return c;
}

describe('raft learners and removed members', () => {
  test('a joining node catches up as a learner, is reported ready, and its promotion changes neither leader nor term', () => {
    const c = new TestCluster(['1']);
    c.elect('1');
    for (let i = 0; i < 100; i++) c.raft('1').propose(bytes(`e${i}`));
    c.stabilize();
    // A joiner knows the founding voters (DiskStorage logs them as the first entries) and is no member itself.
    c.addNode('2', { voters: ['1'], learners: [] });
    c.raft('1').proposeConfChange({ type: 'addLearner', nodeId: '2' });
    c.tickAll(3); // the leader probes a new member on its next heartbeat
    const term = c.raft('1').term;
    assert.deepEqual(c.raft('1').tracker.confState(), { voters: ['1'], learners: ['2'] });
    assert.equal(c.appliedData('2').length, 100, 'the learner received the whole log');
    assert.deepEqual(readyLearners(c.raft('1')), ['2']);
    c.raft('1').proposeConfChange({ type: 'addVoter', nodeId: '2' });
    c.tickAll(30);
    assert.equal(c.leader(), '1');
    assert.equal(c.raft('1').term, term);
    assert.equal(c.raft('2').term, term);
    assert.deepEqual(c.raft('2').tracker.confState(), { voters: ['1', '2'], learners: [] });
    c.raft('1').propose(bytes('after'));
    c.stabilize();
    assert.deepEqual(c.appliedData('2').slice(-1), ['after']);
  });

  test('a learner that lags the commit index by more than the bound, or is silent, is not ready to promote', () => {
    const c = new TestCluster(['1', '2', '3'], { learners: ['4'] });
    c.elect('1');
    c.stabilize();
    c.tickAll(1);
    assert.deepEqual(readyLearners(c.raft('1')), ['4'], 'caught up and active');
    c.isolate('4');
    for (let i = 0; i <= LAG; i++) c.raft('1').propose(bytes(`e${i}`));
    c.stabilize();
    assert.deepEqual(readyLearners(c.raft('1')), [], `more than ${LAG} entries behind`);
    c.heal();
    c.tickAll(2);
    assert.deepEqual(readyLearners(c.raft('1')), ['4'], 'caught up again');
    c.isolate('4');
    c.tickAll(c.raft('1').config.electionTicks + 1);
    assert.deepEqual(readyLearners(c.raft('1')), [], 'not heard from for an election timeout');
    assert.deepEqual(readyLearners(c.raft('2')), [], 'only a leader promotes');
  });

  test('a learner never campaigns, even with the leader gone for many election timeouts', () => {
    const c = new TestCluster(['1', '2', '3'], { learners: ['4'] });
    c.elect('1');
    c.stabilize();
    const term = c.raft('4').term;
    c.isolate('4');
    const sent: RaftMessage[] = [];
    for (let i = 0; i < 10 * c.raft('4').config.electionTicks; i++) {
      c.tick('4');
      sent.push(...c.process('4'));
    }
    c.raft('4').campaign();
    sent.push(...c.process('4'));
    assert.deepEqual(campaigns(sent, '4'), []);
    assert.equal(c.raft('4').role, 'follower');
    assert.equal(c.raft('4').term, term);
  });

  for (const config of [
    { preVote: false, checkQuorum: false },
    { preVote: true, checkQuorum: false },
  ]) {
    test(`voters refuse the campaign of a removed node that missed its removal, and keep their term (preVote=${config.preVote})`, () => {
      const c = clusterWithRemovedNode(config);
      const term = c.raft('1').term;
      const sent: RaftMessage[] = [];
      for (let i = 0; i < 10 * c.raft('3').config.electionTicks; i++) {
        c.tickAll(1);
        sent.push(...c.node('3').readies.flatMap((rd) => rd.messages));
        c.node('3').readies = [];
      }
      assert.ok(campaigns(sent, '3').length > 0, 'the removed node did campaign');
      assert.equal(c.leader(), '1');
      assert.equal(c.raft('1').term, term);
      assert.equal(c.raft('2').term, term);
    });
  }

  test('the leader tells a removed follower of its removal even when the commit broadcast was lost; it then never campaigns', () => {
    const c = new TestCluster(['1', '2', '3']);
    c.elect('1');
    c.stabilize();
    c.raft('1').proposeConfChange({ type: 'removeNode', nodeId: '3' });
    c.process('1');
    c.deliver();
    c.processAll();
    c.deliver(); // acks reach the leader, which commits the removal
    c.process('1');
    assert.ok(!c.raft('1').tracker.voters.has('3'), 'the leader applied the removal');
    c.drop((m) => m.to === '3' && m.type === 'append'); // the commit broadcast is lost
    c.stabilize();
    assert.deepEqual(c.raft('3').tracker.confState().voters, ['1', '2'], '3 applied its own removal');
    assert.equal(c.raft('3').lead, null);
    c.isolate('3');
    const sent: RaftMessage[] = [];
    for (let i = 0; i < 10 * c.raft('3').config.electionTicks; i++) {
      c.tick('3');
      sent.push(...c.process('3'));
    }
    assert.deepEqual(campaigns(sent, '3'), []);
  });
});
