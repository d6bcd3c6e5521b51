import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runSeed } from '../../../scripts/sim/orchestrator.js';

// A handful of seeds keeps the unit tier fast; many more run by hand:
// npm run sim -- orchestrator --seeds 500 (see BENCHMARKS.md).
const SEEDS = [1, 2, 3, 4, 5, 6];

describe('orchestrator simulation', () => {
  for (const seed of SEEDS) {
    it(`holds every safety and liveness invariant under random events (seed ${seed})`, () => {
      const result = runSeed(seed);
      assert.ok(result.steps > 0);
      assert.deepEqual(
        result.violations,
        [],
        `seed ${seed} failed; replay: npm run sim -- orchestrator --seed ${seed}`,
      );
    });
  }

  it('replays a seed exactly', () => {
    assert.deepEqual(runSeed(7, new Map([['steps', '20']])), runSeed(7, new Map([['steps', '20']])));
  });
});
