import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Programmer, Reconciler } from '../../../dataplane/reconciler/reconciler.js';
import type { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { ManualClock } from '../../../src/common/clock.js';
import { ValidationError } from '../../../src/common/errors.js';
import { sampleState } from '../desired/fixtures.js';

/** A programmer over an in-memory "kernel" set of strings: one entry per service endpoint address. */
class SetProgrammer implements Programmer<Set<string>, { op: 'add' | 'del'; entry: string }> {
  readonly name = 'set';
  readonly kernel = new Set<string>();
  dumps = 0;
  writes = 0;
  failNextApply = false;
  desired(state: DesiredState): Set<string> {
    return new Set(state.services.flatMap((s) => s.endpoints.map((e) => `${s.id}/${e.address}`)));
  }
  async dump(): Promise<Set<string>> {
    this.dumps++;
    return new Set(this.kernel);
  }
  plan(desired: Set<string>, actual: Set<string>) {
    return [
      ...[...actual].filter((e) => !desired.has(e)).map((entry) => ({ op: 'del' as const, entry })),
      ...[...desired].filter((e) => !actual.has(e)).map((entry) => ({ op: 'add' as const, entry })),
    ];
  }
  async apply(changes: readonly { op: 'add' | 'del'; entry: string }[]) {
    if (this.failNextApply) {
      this.failNextApply = false;
      throw new Error('EEXIST');
    }
    for (const c of changes) {
      if (c.op === 'add') this.kernel.add(c.entry);
      else this.kernel.delete(c.entry);
      this.writes++;
    }
    return { kernelOperations: changes.length };
  }
}

describe('reconciler', () => {
  test('applying the same state again makes zero kernel changes and reads nothing', async () => {
    const p = new SetProgrammer();
    const r = new Reconciler([p]);
    assert.equal((await r.apply(sampleState())).changes, 4);
    const dumps = p.dumps;
    const again = await r.apply(sampleState());
    assert.equal(again.changes, 0);
    assert.equal(again.kernelOperations, 0);
    assert.equal(p.dumps, dumps);
  });

  test('an apply reports each programmer as soon as it is done, before the later ones run', async () => {
    const first = new SetProgrammer();
    const second = new SetProgrammer();
    const seen: string[] = [];
    const secondApply = second.apply.bind(second);
    second.apply = async (changes) => {
      seen.push(`applying second (first reported: ${seen.includes('set') ? 'yes' : 'no'})`);
      return secondApply(changes);
    };
    const r = new Reconciler([first, second]);
    await r.apply(sampleState(), { onProgrammed: (name) => seen.push(name) });
    assert.deepEqual(seen, ['set', 'applying second (first reported: yes)', 'set']);
  });

  test('a change costs only what changed', async () => {
    const p = new SetProgrammer();
    const r = new Reconciler([p]);
    await r.apply(sampleState());
    const next = sampleState();
    next.services[0]!.endpoints.pop();
    const result = await r.apply(next);
    assert.equal(result.changes, 1);
    assert.equal(p.writes, 5);
  });

  test('an invalid state is rejected before any programmer runs', async () => {
    const p = new SetProgrammer();
    const r = new Reconciler([p]);
    const bad = sampleState();
    bad.networks[1]!.vni = bad.networks[0]!.vni;
    await assert.rejects(r.apply(bad), ValidationError);
    assert.equal(p.dumps, 0);
    assert.equal(p.kernel.size, 0);
  });

  test('a resync re-reads the kernel, repairs drift and counts it', async () => {
    const p = new SetProgrammer();
    const r = new Reconciler([p]);
    await r.apply(sampleState());
    p.kernel.delete('web/10.10.0.11');
    p.kernel.add('web/10.9.9.9');
    const result = await r.resync();
    assert.equal(result?.changes, 2);
    assert.equal(r.status().driftRepairsTotal, 2);
    assert.match(await r.registry.metrics(), /meshd_dataplane_drift_repairs_total\{programmer="set"\} 2/);
    assert.deepEqual(p.kernel, p.desired(sampleState()));
  });

  test('an apply planned from memory that fails re-reads the kernel and retries once', async () => {
    const p = new SetProgrammer();
    const r = new Reconciler([p]);
    await r.apply(sampleState());
    const next = sampleState();
    next.services[0]!.endpoints.pop();
    p.failNextApply = true;
    assert.equal((await r.apply(next)).changes, 1);
    assert.deepEqual(p.kernel, p.desired(next));
  });

  test('the periodic resync runs on the clock until stopped', async () => {
    const p = new SetProgrammer();
    const r = new Reconciler([p]);
    await r.apply(sampleState());
    const clock = new ManualClock();
    const stop = r.startPeriodicResync(clock, 1000);
    clock.advance(1000);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(r.status().resyncs, 1);
    stop();
    clock.advance(5000);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(r.status().resyncs, 1);
  });
});
