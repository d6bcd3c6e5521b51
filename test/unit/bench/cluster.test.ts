import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { latest, quantile } from '../../../scripts/bench/cluster/observe.js';

describe('bench cluster: pure helpers', () => {
  test('quantile is the nearest-rank value, so p99 of 20 trials is the slowest', () => {
    const values = Array.from({ length: 20 }, (_, i) => 20 - i);
    assert.equal(quantile(values, 0.5), 10);
    assert.equal(quantile(values, 0.99), 20);
    assert.equal(quantile([7], 0.99), 7);
    assert.ok(Number.isNaN(quantile([], 0.5)));
  });

  test('latest of stamps is NaN when any wait timed out', () => {
    assert.equal(latest([3, 9, 4]), 9);
    assert.ok(Number.isNaN(latest([3, Number.NaN])));
  });
});
