import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { desiredStateForNode } from '../../../controlplane/dispatcher/assignments.js';
import { applyDelta, diffDesiredState } from '../../../controlplane/dispatcher/delta.js';
import { applyAssignments, applyDesiredStateDelta } from '../../../dataplane/agent/assignments.js';
import { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { AssignmentsKind, type AssignmentsResponse } from '../../../src/api/gen/meshd/v1/dispatcher.js';
import { TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { cluster, task } from '../dispatcher/fixtures.js';

const empty = DesiredState.fromPartial({ version: 1 });

function msg(partial: Partial<AssignmentsResponse>): AssignmentsResponse {
  return {
    kind: AssignmentsKind.ASSIGNMENTS_KIND_INCREMENTAL,
    fromVersion: 0,
    toVersion: 0,
    upsertTasks: [],
    removeTasks: [],
    desiredState: undefined,
    desiredStateDelta: undefined,
    ...partial,
  };
}

test('a COMPLETE set replaces everything; increments apply on top of the version held', () => {
  const a = task('a', 's', 'n1', 1, TaskState.TASK_STATE_ASSIGNED, {});
  const b = task('b', 's', 'n1', 2, TaskState.TASK_STATE_ASSIGNED, {});
  let s = applyAssignments(
    undefined,
    msg({
      kind: AssignmentsKind.ASSIGNMENTS_KIND_COMPLETE,
      toVersion: 5,
      upsertTasks: [a],
      desiredState: empty,
    }),
  );
  s = applyAssignments(s, msg({ fromVersion: 5, toVersion: 7, upsertTasks: [b], removeTasks: ['a'] }));
  assert.deepEqual([...s.tasks.keys()], ['b']);
  assert.equal(s.version, 7);
  assert.equal(s.desired.version, 7);
});

test('an increment on top of a version the node does not hold is refused (the session restarts COMPLETE)', () => {
  const s = applyAssignments(
    undefined,
    msg({ kind: AssignmentsKind.ASSIGNMENTS_KIND_COMPLETE, toVersion: 5, desiredState: empty }),
  );
  assert.throws(() => applyAssignments(s, msg({ fromVersion: 4, toVersion: 6 })), /holds version 5/);
  assert.throws(
    () => applyAssignments(undefined, msg({ fromVersion: 0, toVersion: 6 })),
    /before any COMPLETE/,
  );
});

test('the agent applies a delta exactly as the dispatcher does (property)', () => {
  const states = [TaskState.TASK_STATE_ASSIGNED, TaskState.TASK_STATE_RUNNING, TaskState.TASK_STATE_FAILED];
  const arbTasks = fc.uniqueArray(
    fc.record({
      node: fc.constantFrom('n1', 'n2', 'n3'),
      state: fc.constantFrom(...states),
      slot: fc.integer({ min: 1, max: 6 }),
    }),
    { maxLength: 6, selector: (t) => t.slot },
  );
  const view = (ts: { node: string; state: TaskState; slot: number }[]) =>
    cluster(
      ts.map((t, i) => task(`t${t.slot}`, 'web', t.node, t.slot, t.state, { app: `10.0.1.${10 + i}/24` })),
    );
  fc.assert(
    fc.property(arbTasks, arbTasks, (x, y) => {
      const a = desiredStateForNode(view(x), 'n1', 1);
      const b = desiredStateForNode(view(y), 'n1', 2);
      const delta = diffDesiredState(a, b);
      assert.deepEqual(applyDesiredStateDelta(a, delta, 2), applyDelta(a, delta, 2));
      assert.deepEqual(DesiredState.toJSON(applyDesiredStateDelta(a, delta, 2)), DesiredState.toJSON(b));
    }),
    { numRuns: 100 },
  );
});
