import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { appliedStatePath, appliedStateRecorder, readAppliedState } from '../../../src/meshd/state-file.js';
import { sampleState } from '../desired/fixtures.js';

test('meshd run records each new applied state durably, and the same state again costs no write', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-applied-'));
  try {
    const errors: unknown[] = [];
    const record = appliedStateRecorder(dir, (err) => errors.push(err));
    const first = sampleState();
    assert.equal(record(first), true);
    assert.equal(readAppliedState(dir)?.version, first.version);
    const written = statSync(appliedStatePath(dir)).mtimeMs;
    assert.equal(record(sampleState()), false, 'an equal state (a new object) is not written again');
    assert.equal(statSync(appliedStatePath(dir)).mtimeMs, written);
    const next = { ...sampleState(), version: first.version + 1 };
    assert.equal(record(next), true);
    assert.equal(readAppliedState(dir)?.version, next.version);
    assert.deepEqual(errors, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failed write of the applied state is reported, not thrown, and retried with the next state', () => {
  const errors: unknown[] = [];
  let fail = true;
  const writes: number[] = [];
  const record = appliedStateRecorder(
    '/nonexistent',
    (err) => errors.push(err),
    (_dir, state) => {
      if (fail) throw new Error('ENOSPC');
      writes.push(state.version);
    },
  );
  assert.equal(record(sampleState()), false);
  assert.equal(errors.length, 1);
  fail = false;
  assert.equal(record(sampleState()), true, 'the same state is tried again after a failed write');
  assert.deepEqual(writes, [sampleState().version]);
});
