import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AssertionFailed, assert as check, MeshError, ValidationError } from '../../../src/common/errors.js';
import { isId, newId, newIdFrom } from '../../../src/common/ids.js';
import { SeededRng } from '../../../src/common/rng.js';

describe('errors', () => {
  it('a MeshError carries a stable code, a message for people and its cause', () => {
    const cause = new Error('ENOENT');
    const err = new MeshError('WAL_CORRUPT', 'wal: corrupt record in 0001.wal at offset 4096', { cause });
    assert.equal(err.code, 'WAL_CORRUPT');
    assert.match(err.message, /offset 4096/);
    assert.equal(err.cause, cause);
    assert.ok(err instanceof Error);
  });

  it('a ValidationError names the field it rejects', () => {
    const err = new ValidationError(
      'replicas',
      'service "web": --replicas must be an integer 0..10000, got "-3"',
    );
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.equal(err.field, 'replicas');
    assert.equal(err.details['field'], 'replicas');
  });

  it('assert throws AssertionFailed when the condition is false', () => {
    assert.throws(() => check(false, 'term went backwards'), AssertionFailed);
    assert.doesNotThrow(() => check(true, 'fine'));
  });
});

describe('ids', () => {
  it('random IDs are 25 base32 characters and distinct', () => {
    const ids = new Set(Array.from({ length: 1000 }, newId));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.ok(isId(id), id);
  });

  it('seeded IDs replay from the seed', () => {
    assert.equal(newIdFrom(new SeededRng(5)), newIdFrom(new SeededRng(5)));
    assert.ok(isId(newIdFrom(new SeededRng(5))));
  });
});
