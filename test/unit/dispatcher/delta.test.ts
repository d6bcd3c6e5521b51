import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { desiredStateForNode } from '../../../controlplane/dispatcher/assignments.js';
import { applyDelta, diffDesiredState, isEmptyDelta } from '../../../controlplane/dispatcher/delta.js';
import { TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { cluster, task } from './fixtures.js';

const states = [
  TaskState.TASK_STATE_PENDING,
  TaskState.TASK_STATE_ASSIGNED,
  TaskState.TASK_STATE_RUNNING,
  TaskState.TASK_STATE_FAILED,
];
const arbTasks = fc
  .array(
    fc.record({
      node: fc.constantFrom('n1', 'n2', 'n3'),
      state: fc.constantFrom(...states),
      stopping: fc.boolean(),
    }),
    { maxLength: 12 },
  )
  .map((specs) =>
    specs.map((s, i) =>
      task(
        `t${i}`,
        'web',
        s.node,
        i + 1,
        s.state,
        // The allocator gives unique addresses; the generator does too.
        { app: `10.0.1.${10 + i}/24`, ingress: `10.255.0.${10 + i}/16` },
        s.stopping ? TaskState.TASK_STATE_SHUTDOWN : TaskState.TASK_STATE_RUNNING,
      ),
    ),
  );

describe('assignment increments', () => {
  it('applying the diff of two states to the first gives the second', () => {
    fc.assert(
      fc.property(arbTasks, arbTasks, fc.constantFrom('n1', 'n2', 'n3'), (before, after, nodeId) => {
        const a = desiredStateForNode(cluster(before), nodeId, 1);
        const b = desiredStateForNode(cluster(after), nodeId, 2);
        assert.deepEqual(applyDelta(a, diffDesiredState(a, b), 2), b);
      }),
      { numRuns: 200 },
    );
  });

  it('the same state twice is an empty increment', () => {
    fc.assert(
      fc.property(arbTasks, (tasks) => {
        const a = desiredStateForNode(cluster(tasks), 'n1', 1);
        assert.ok(isEmptyDelta(diffDesiredState(a, a)));
      }),
      { numRuns: 50 },
    );
  });

  it('one task starting elsewhere changes only what it touches', () => {
    const t1 = task('t1', 'web', 'n1', 1, TaskState.TASK_STATE_RUNNING, { app: '10.0.1.10/24' });
    const t2 = task('t2', 'web', 'n2', 2, TaskState.TASK_STATE_RUNNING, { app: '10.0.1.11/24' });
    const a = desiredStateForNode(cluster([t1]), 'n1', 1);
    const b = desiredStateForNode(cluster([t1, t2]), 'n1', 2);
    const d = diffDesiredState(a, b);
    assert.equal(d.upsertSandboxes.length, 0);
    assert.deepEqual(
      d.upsertRemoteEndpoints.map((r) => r.taskId),
      ['t2'],
    );
    assert.deepEqual(
      d.upsertServices.map((s) => s.id),
      ['web'],
    );
    assert.equal(d.node, undefined);
  });
});
