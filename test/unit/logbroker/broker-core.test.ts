import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type BrokerEffect,
  LogBrokerCore,
  type NodeTarget,
  type SubscriptionSpec,
} from '../../../controlplane/logbroker/broker-core.js';
import { MeshError } from '../../../src/common/errors.js';

const LIMITS = { answerTimeoutMs: 5000, maxSubscriptions: 3 };

function node(nodeId: string, taskIds: string[], down = false): NodeTarget {
  return { nodeId, nodeName: `host-${nodeId}`, taskIds, down };
}

function spec(
  id: string,
  nodes: NodeTarget[],
  follow = false,
  tail: number | undefined = undefined,
): SubscriptionSpec {
  return { id, follow, tail, nodes };
}

const sends = (effects: BrokerEffect[]) =>
  effects.filter((e): e is Extract<BrokerEffect, { type: 'send' }> => e.type === 'send');
const warnings = (effects: BrokerEffect[]) =>
  effects.filter((e): e is Extract<BrokerEffect, { type: 'warn' }> => e.type === 'warn').map((e) => e.text);
const ended = (effects: BrokerEffect[]) => effects.some((e) => e.type === 'end');

describe('log broker core', () => {
  test('a subscription is sent to each listening node with only that node’s tasks', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.listen('n2', 0);
    const effects = core.subscribe(spec('s1', [node('n1', ['t1', 't2']), node('n2', ['t3'])], false, 1), 0);
    assert.deepEqual(
      sends(effects).map((e) => [e.nodeId, e.message.taskIds, e.message.tail, e.message.follow]),
      [
        ['n1', ['t1', 't2'], 1, false],
        ['n2', ['t3'], 1, false],
      ],
    );
    assert.equal(ended(effects), false);
  });

  test('a node that starts listening later is asked for the subscriptions waiting on it', () => {
    const core = new LogBrokerCore(LIMITS);
    assert.equal(sends(core.subscribe(spec('s1', [node('n1', ['t1'])]), 0)).length, 0);
    const later = core.listen('n1', 100);
    assert.deepEqual(
      sends(later).map((e) => e.message.id),
      ['s1'],
    );
  });

  test('a subscription without follow ends once every node closed', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.listen('n2', 0);
    core.subscribe(spec('s1', [node('n1', ['t1']), node('n2', ['t2'])]), 0);
    const first = core.publish('n1', 's1', ['t1'], true);
    assert.equal(first.type, 'accept');
    assert.equal(first.type === 'accept' && ended(first.effects), false);
    const second = core.publish('n2', 's1', ['t2'], true);
    assert.ok(second.type === 'accept' && ended(second.effects));
    assert.equal(core.subscriptionCount, 0);
  });

  test('a node may publish only its own tasks of the subscription', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.listen('n2', 0);
    core.subscribe(spec('s1', [node('n1', ['t1']), node('n2', ['t2'])]), 0);
    const stolen = core.publish('n1', 's1', ['t2'], false);
    assert.equal(stolen.type, 'refuse');
    assert.match(stolen.type === 'refuse' ? stolen.reason : '', /task t2 is not a task of node n1/);
    const stranger = core.publish('n9', 's1', [], false);
    assert.equal(stranger.type, 'refuse');
  });

  test('a publish for a subscription that is over tells the node to stop', () => {
    const core = new LogBrokerCore(LIMITS);
    assert.deepEqual(core.publish('n1', 'gone', ['t1'], false), { type: 'stop' });
  });

  test('a node that does not answer within the bound is named in a warning and the rest completes', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.subscribe(spec('s1', [node('n1', ['t1']), node('n2', ['t2', 't3'])]), 0);
    core.publish('n1', 's1', ['t1'], true);
    assert.equal(core.nextDeadlineMs(), 5000);
    assert.deepEqual(core.tick(4999), []);
    const effects = core.tick(5000);
    assert.deepEqual(warnings(effects), [
      'node host-n2 (n2) did not answer within 5 s: logs of its 2 tasks are missing',
    ]);
    assert.ok(ended(effects));
    assert.equal(core.nextDeadlineMs(), undefined);
  });

  test('a node the store says is down is warned about at once', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    const effects = core.subscribe(spec('s1', [node('n1', ['t1']), node('n2', ['t2'], true)]), 0);
    assert.deepEqual(warnings(effects), ['node host-n2 (n2) is down: logs of its 1 task are missing']);
    assert.equal(sends(effects).length, 1);
  });

  test('a node whose stream breaks mid-subscription is warned about and the subscription completes', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.listen('n2', 0);
    core.subscribe(spec('s1', [node('n1', ['t1']), node('n2', ['t2'])]), 0);
    core.publish('n1', 's1', ['t1'], true);
    core.publish('n2', 's1', ['t2'], false);
    const effects = core.nodeLost('n2', 'ended its log stream');
    assert.deepEqual(warnings(effects), [
      'node host-n2 (n2) ended its log stream: logs of its 1 task are missing',
    ]);
    assert.ok(ended(effects));
  });

  test('without follow, a node must publish again within the bound once its batch was delivered', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.subscribe(spec('s1', [node('n1', ['t1'])]), 0);
    core.publish('n1', 's1', ['t1'], false);
    // While the batch waits for a slow subscriber the node is not silent.
    assert.equal(core.nextDeadlineMs(), undefined);
    assert.deepEqual(core.tick(60_000), []);
    core.delivered('n1', 's1', 1000);
    assert.equal(core.nextDeadlineMs(), 6000);
    const effects = core.tick(6000);
    assert.match(warnings(effects)[0] ?? '', /stopped sending for 5 s/);
    assert.ok(ended(effects));
  });

  test('a following subscription never ends by itself; a quiet node that answered is not warned about', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.subscribe(spec('s1', [node('n1', ['t1'])], true), 0);
    core.publish('n1', 's1', [], false);
    assert.equal(core.nextDeadlineMs(), undefined);
    assert.deepEqual(core.tick(1_000_000), []);
    assert.equal(core.subscriptionCount, 1);
  });

  test('a following subscription resumes a node that comes back, asking for no old lines', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.subscribe(spec('s1', [node('n1', ['t1'])], true, 10), 0);
    core.publish('n1', 's1', [], false);
    assert.equal(warnings(core.nodeLost('n1', 'ended its log stream')).length, 1);
    const again = sends(core.listen('n1', 50));
    assert.deepEqual(
      again.map((e) => [e.message.id, e.message.tail]),
      [['s1', 0]],
    );
  });

  test('the subscriber going away tells every node still sending to stop', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.listen('n2', 0);
    core.subscribe(spec('s1', [node('n1', ['t1']), node('n2', ['t2'])], true), 0);
    const effects = core.cancel('s1');
    assert.deepEqual(
      sends(effects).map((e) => [e.nodeId, e.message.close]),
      [
        ['n1', true],
        ['n2', true],
      ],
    );
    assert.equal(core.subscriptionCount, 0);
    assert.deepEqual(core.publish('n1', 's1', ['t1'], false), { type: 'stop' });
  });

  test('a task placed after a follow started is asked for from its first line, on a known or a new node', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.listen('n2', 0);
    core.subscribe(spec('s1', [node('n1', ['t1'])], true, 0), 0);
    core.publish('n1', 's1', ['t1'], false);
    const known = sends(core.addTask('s1', 'n1', 'host-n1', 't3', 10));
    assert.deepEqual(
      known.map((e) => [e.nodeId, e.message.taskIds, e.message.tail]),
      [['n1', ['t3'], undefined]],
    );
    assert.equal(core.publish('n1', 's1', ['t3'], false).type, 'accept');
    const fresh = sends(core.addTask('s1', 'n2', 'host-n2', 't4', 30));
    assert.deepEqual(
      fresh.map((e) => [e.nodeId, e.message.taskIds, e.message.follow]),
      [['n2', ['t4'], true]],
    );
    assert.equal(core.nextDeadlineMs(), 30 + LIMITS.answerTimeoutMs);
    assert.deepEqual(core.addTask('s1', 'n2', 'host-n2', 't4', 40), []);
  });

  test('a subscription that does not follow ignores tasks placed after it started', () => {
    const core = new LogBrokerCore(LIMITS);
    core.listen('n1', 0);
    core.subscribe(spec('s1', [node('n1', ['t1'])]), 0);
    assert.deepEqual(core.addTask('s1', 'n1', 'host-n1', 't2', 1), []);
    assert.equal(core.publish('n1', 's1', ['t2'], false).type, 'refuse');
  });

  test('subscriptions are bounded in number', () => {
    const core = new LogBrokerCore(LIMITS);
    for (let i = 0; i < 3; i++) core.subscribe(spec(`s${i}`, [node('n1', ['t1'])], true), 0);
    assert.throws(
      () => core.subscribe(spec('s9', [node('n1', ['t1'])], true), 0),
      (err: unknown) => err instanceof MeshError && err.code === 'TOO_MANY_SUBSCRIPTIONS',
    );
  });

  test('a subscription over no nodes ends at once', () => {
    const core = new LogBrokerCore(LIMITS);
    assert.ok(ended(core.subscribe(spec('s1', []), 0)));
  });

  test('property: every non-follow subscription ends by the answer bound, whatever the nodes do', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(
          fc.record({
            at: fc.integer({ min: 0, max: 20_000 }),
            node: fc.integer({ min: 0, max: 4 }),
            kind: fc.constantFrom('publish', 'close', 'lost', 'listen'),
          }),
          { maxLength: 30 },
        ),
        (nodeCount, events) => {
          const core = new LogBrokerCore(LIMITS);
          const nodes = Array.from({ length: nodeCount }, (_, i) => node(`n${i}`, [`t${i}`]));
          let done = ended(core.subscribe(spec('s', nodes), 0));
          let nowMs = 0;
          for (const e of [...events].sort((a, b) => a.at - b.at)) {
            if (done) break;
            nowMs = e.at;
            const id = `n${e.node % nodeCount}`;
            const effects: BrokerEffect[] = [...core.tick(nowMs)];
            if (e.kind === 'listen') effects.push(...core.listen(id, nowMs));
            else if (e.kind === 'lost') effects.push(...core.nodeLost(id, 'lost'));
            else {
              const d = core.publish(id, 's', [`t${e.node % nodeCount}`], e.kind === 'close');
              if (d.type === 'accept') {
                effects.push(...d.effects);
                core.delivered(id, 's', nowMs);
              }
            }
            done = done || ended(effects);
          }
          // With no more events, time alone ends it within one more answer bound.
          if (!done) done = ended(core.tick(nowMs + LIMITS.answerTimeoutMs));
          assert.ok(done, 'the subscription did not end');
          assert.equal(core.subscriptionCount, 0);
          assert.equal(core.nextDeadlineMs(), undefined);
        },
      ),
      { numRuns: 300 },
    );
  });
});
