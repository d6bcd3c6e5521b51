import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  checkKvHistory,
  type KvOperation,
} from '../../../../controlplane/raft/sim/linearizability/checker.js';

const INF = Number.POSITIVE_INFINITY;

function put(
  clientId: number,
  key: string,
  value: string,
  callTime: number,
  returnTime: number,
): KvOperation {
  return { clientId, input: { kind: 'put', key, value }, output: null, callTime, returnTime };
}

function get(
  clientId: number,
  key: string,
  output: string | null,
  callTime: number,
  returnTime: number,
): KvOperation {
  return { clientId, input: { kind: 'get', key }, output, callTime, returnTime };
}

describe('linearizability checker (Wing–Gong / Lowe)', () => {
  test('a sequential history that reads the last write is linearizable', () => {
    assert.equal(
      checkKvHistory([
        put(1, 'x', '1', 0, 1),
        get(2, 'x', '1', 2, 3),
        put(1, 'x', '2', 4, 5),
        get(2, 'x', '2', 6, 7),
      ]).ok,
      true,
    );
  });

  test('a read of a value overwritten before the read began is rejected (stale read)', () => {
    const r = checkKvHistory([put(1, 'x', '1', 0, 1), put(1, 'x', '2', 2, 3), get(2, 'x', '1', 4, 5)]);
    assert.equal(r.ok, false);
    assert.equal(r.failingKey, 'x');
  });

  test('a read of a value never written is rejected', () => {
    assert.equal(checkKvHistory([put(1, 'x', '1', 0, 1), get(2, 'x', '7', 2, 3)]).ok, false);
  });

  test('a read of the initial value after a completed write is rejected', () => {
    assert.equal(checkKvHistory([put(1, 'x', '1', 0, 1), get(2, 'x', null, 2, 3)]).ok, false);
  });

  test('concurrent operations may take effect in either order', () => {
    assert.equal(
      checkKvHistory([put(1, 'x', '1', 0, 10), get(2, 'x', '1', 1, 2), get(3, 'x', null, 0, 1)]).ok,
      true,
    );
  });

  test('two reads that disagree on the order of two writes are rejected', () => {
    const h = [
      put(1, 'x', 'a', 0, 10),
      put(2, 'x', 'b', 0, 10),
      get(3, 'x', 'a', 11, 12),
      get(3, 'x', 'b', 13, 14),
      get(4, 'x', 'a', 15, 16),
    ];
    assert.equal(checkKvHistory(h).ok, false);
  });

  test('a write with an unknown outcome may take effect late, or never', () => {
    const lateEffect = [put(1, 'x', '1', 0, INF), get(2, 'x', null, 5, 6), get(2, 'x', '1', 100, 101)];
    assert.equal(checkKvHistory(lateEffect).ok, true);
    const never = [put(1, 'x', '1', 0, INF), get(2, 'x', null, 100, 101)];
    assert.equal(checkKvHistory(never).ok, true);
    const flapping = [put(1, 'x', '1', 0, INF), get(2, 'x', '1', 5, 6), get(2, 'x', null, 7, 8)];
    assert.equal(checkKvHistory(flapping).ok, false, 'once seen, an unknown write cannot be undone');
  });

  test('keys are checked independently', () => {
    const h = [
      put(1, 'x', '1', 0, 1),
      put(1, 'y', '2', 0, 1),
      get(2, 'y', '2', 2, 3),
      get(2, 'x', '2', 2, 3),
    ];
    const r = checkKvHistory(h);
    assert.equal(r.ok, false);
    assert.equal(r.failingKey, 'x');
  });

  test('every history produced by a sequential register is accepted (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.constantFrom('x', 'y'), fc.nat(3)), { maxLength: 40 }),
        (ops) => {
          const store = new Map<string, string>();
          const history: KvOperation[] = ops.map(([isPut, key, v], i) => {
            if (isPut) {
              store.set(key, `${i}-${v}`);
              return put(i % 3, key, `${i}-${v}`, 2 * i, 2 * i + 1);
            }
            return get(i % 3, key, store.get(key) ?? null, 2 * i, 2 * i + 1);
          });
          return checkKvHistory(history).ok;
        },
      ),
      { seed: 42, numRuns: 200 },
    );
  });
});
