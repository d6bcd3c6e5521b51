import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type HelperStartPolicy,
  helperRetryDelayMs,
  helperStartTimeoutMs,
} from '../../../dataplane/netns/backoff.js';
import { HelperPool, type PooledHelper } from '../../../dataplane/netns/pool.js';
import { ManualClock } from '../../../src/common/clock.js';
import { SeededRng } from '../../../src/common/rng.js';

const POLICY: HelperStartPolicy = {
  baseRetryDelayMs: 100,
  maxRetryDelayMs: 800,
  baseStartTimeoutMs: 1000,
  maxStartTimeoutMs: 4000,
};

class FakeHelper implements PooledHelper {
  alive = true;
  stops = 0;
  constructor(readonly netns: string) {}
  async stop(): Promise<void> {
    this.stops++;
    this.alive = false;
  }
}

interface StartCall {
  netns: string;
  startTimeoutMs: number;
  atMs: number;
}

function fixture(options: { failFirst?: number; seed?: number } = {}) {
  const clock = new ManualClock(0);
  const calls: StartCall[] = [];
  const helpers: FakeHelper[] = [];
  const identities = new Map<string, string>([['mdn-a', '1:100']]);
  const pool = new HelperPool<FakeHelper>({
    clock,
    rng: new SeededRng(options.seed ?? 7),
    policy: POLICY,
    identify: (netns) => identities.get(netns),
    start: async (netns, startTimeoutMs) => {
      calls.push({ netns, startTimeoutMs, atMs: clock.nowMs() });
      if (calls.length <= (options.failFirst ?? 0)) throw new Error(`not ready within ${startTimeoutMs} ms`);
      const h = new FakeHelper(netns);
      helpers.push(h);
      return h;
    },
  });
  return { clock, calls, helpers, identities, pool };
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

test('a failed helper start is retried only after a growing, jittered delay, each time with a longer start timeout', async () => {
  const seed = 7;
  const { clock, calls, pool } = fixture({ failFirst: 4, seed });
  for (let attempt = 1; attempt <= 4; attempt++) {
    // Handled at once: it rejects while the clock is advanced below.
    const got = pool.get('mdn-a').then(
      () => null,
      (err: unknown) => err,
    );
    await settle();
    const failedAtMs = calls.at(-1)?.atMs ?? 0;
    if (attempt > 1) {
      // Nothing starts before the backoff's lower bound (half the doubled delay).
      const capMs = Math.min(POLICY.maxRetryDelayMs, POLICY.baseRetryDelayMs * 2 ** (attempt - 2));
      assert.equal(calls.length, attempt - 1, `seed ${seed}: attempt ${attempt} started without waiting`);
      clock.advance(Math.floor(capMs / 2) - 1);
      await settle();
      assert.equal(
        calls.length,
        attempt - 1,
        `seed ${seed}: attempt ${attempt} started before ${capMs / 2} ms`,
      );
      // Then it starts by the cap, at the latest (1 ms steps: the start follows the timer in a microtask).
      while (calls.length < attempt && clock.nowMs() - failedAtMs < capMs) {
        clock.advance(1);
        await settle();
      }
      const waitedMs = (calls.at(-1)?.atMs ?? 0) - failedAtMs;
      assert.equal(calls.length, attempt, `seed ${seed}: attempt ${attempt} not started within ${capMs} ms`);
      assert.ok(
        waitedMs >= capMs / 2 && waitedMs <= capMs,
        `seed ${seed}: waited ${waitedMs} ms, cap ${capMs}`,
      );
    }
    assert.match(String(await got), /not ready/);
    assert.equal(pool.failedStarts('mdn-a'), attempt);
  }
  assert.deepEqual(
    calls.map((c) => c.startTimeoutMs),
    [1000, 2000, 4000, 4000],
  );
  clock.advance(POLICY.maxRetryDelayMs);
  const helper = await pool.get('mdn-a');
  assert.equal(helper.alive, true);
  assert.equal(pool.failedStarts('mdn-a'), 0, 'a success clears the record');
  assert.equal(await pool.get('mdn-a'), helper, 'a live helper in the same namespace is reused');
});

test('retry delays stay within [cap/2, cap] of a bounded doubling, and start timeouts double up to their bound', () => {
  for (let seed = 1; seed <= 50; seed++) {
    const rng = new SeededRng(seed);
    for (let failures = 1; failures <= 40; failures++) {
      const capMs = Math.min(POLICY.maxRetryDelayMs, POLICY.baseRetryDelayMs * 2 ** (failures - 1));
      const delayMs = helperRetryDelayMs(failures, POLICY, rng);
      assert.ok(
        delayMs >= capMs / 2 && delayMs <= capMs,
        `seed ${seed}: failures ${failures} gave ${delayMs}`,
      );
    }
  }
  assert.equal(helperRetryDelayMs(0, POLICY, new SeededRng(1)), 0);
  assert.deepEqual(
    [0, 1, 2, 3, 50].map((f) => helperStartTimeoutMs(f, POLICY)),
    [1000, 2000, 4000, 4000, 4000],
  );
});

test('a helper whose namespace was replaced under the same name is stopped and a new one started in the new namespace', async () => {
  const { calls, helpers, identities, pool } = fixture();
  const first = await pool.get('mdn-a');
  identities.set('mdn-a', '1:200');
  const second = await pool.get('mdn-a');
  assert.notEqual(second, first);
  assert.equal(calls.length, 2);
  await settle();
  assert.equal(first.stops, 1, 'the helper in the old namespace is stopped');
  assert.equal(await pool.get('mdn-a'), second);
  assert.equal(helpers.length, 2);
});

test('a helper that died is replaced on the next use, at once', async () => {
  const { calls, pool } = fixture();
  const first = await pool.get('mdn-a');
  first.alive = false;
  const second = await pool.get('mdn-a');
  assert.notEqual(second, first);
  assert.equal(calls.length, 2);
  assert.equal(calls[1]?.atMs, 0);
});

test('a namespace made anew, or a stop, clears the backoff: its first start is not delayed', async () => {
  const { calls, identities, pool } = fixture({ failFirst: 2 });
  await assert.rejects(pool.get('mdn-a'));
  identities.set('mdn-a', '1:300');
  await assert.rejects(pool.get('mdn-a'));
  assert.equal(calls.length, 2, 'started again without waiting');
  assert.equal(calls[1]?.startTimeoutMs, POLICY.baseStartTimeoutMs);
  await pool.stop('mdn-a');
  assert.equal(pool.failedStarts('mdn-a'), 0);
  const h = await pool.get('mdn-a');
  assert.equal(h.alive, true);
  assert.equal(calls.length, 3);
});
