import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { InMemoryProposer } from '../../../controlplane/store/proposer.js';
import {
  decodeTransaction,
  encodeTransaction,
  TransactionBuilder,
} from '../../../controlplane/store/transaction.js';
import type { StoreEvent } from '../../../controlplane/store/types.js';
import { WatchQueue } from '../../../controlplane/store/watch-queue.js';
import {
  NetworkObject,
  ServiceObject,
  StoreSnapshot,
  Task,
  TaskState,
} from '../../../src/api/gen/meshd/v1/objects.js';
import { MeshError } from '../../../src/common/errors.js';

function service(id: string, name: string): ServiceObject {
  return ServiceObject.fromPartial({ meta: { id }, spec: { name, replicas: 1 } });
}

function task(id: string, serviceId: string, slot: number, state = TaskState.TASK_STATE_NEW): Task {
  return Task.fromPartial({
    meta: { id },
    serviceId,
    slot,
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state },
  });
}

function errCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof MeshError) return err.code;
    throw err;
  }
  return 'no error';
}

describe('store transactions', () => {
  it('stamps objects with the transaction index as version and the proposal time', () => {
    const store = new MemoryStore();
    const index = store.apply(new TransactionBuilder(5000).create('service', service('s1', 'web')).build());
    assert.equal(index, 1);
    const s = store.get('service', 's1')!;
    assert.equal(s.meta?.version?.index, 1);
    assert.equal(s.meta?.createdAt?.unixMs, 5000);
  });

  it('applies a transaction all or nothing: one bad action leaves the store unchanged', () => {
    const store = new MemoryStore();
    const first = new TransactionBuilder(0)
      .create('service', service('s2', 'db'))
      .create('service', service('s1', 'web'));
    const again = new TransactionBuilder(0).create('service', service('s1', 'web2'));
    const tx = { ...first.build(), actions: [...first.build().actions, ...again.build().actions] };
    assert.equal(
      errCode(() => store.apply(tx)),
      'ALREADY_EXISTS',
    );
    assert.equal(store.list('service').length, 0);
    assert.equal(store.index, 0);
  });

  it('refuses an update based on a stale version (optimistic concurrency)', () => {
    const store = new MemoryStore();
    store.apply(new TransactionBuilder(0).create('service', service('s1', 'web')).build());
    const stale = structuredClone(store.get('service', 's1')!);
    const fresh = structuredClone(stale);
    fresh.spec!.replicas = 3;
    store.apply(new TransactionBuilder(0).update('service', fresh).build());
    stale.spec!.replicas = 7;
    assert.equal(
      errCode(() => store.apply(new TransactionBuilder(0).update('service', stale).build())),
      'VERSION_CONFLICT',
    );
    assert.equal(store.get('service', 's1')!.spec?.replicas, 3);
  });

  it('refuses a second service or network with the same name', () => {
    const store = new MemoryStore();
    store.apply(new TransactionBuilder(0).create('service', service('s1', 'web')).build());
    assert.equal(
      errCode(() => store.apply(new TransactionBuilder(0).create('service', service('s2', 'web')).build())),
      'NAME_CONFLICT',
    );
    const net = (id: string) => NetworkObject.fromPartial({ meta: { id }, name: 'app', driver: 'overlay' });
    assert.equal(
      errCode(() =>
        store.apply(
          new TransactionBuilder(0).create('network', net('n1')).create('network', net('n2')).build(),
        ),
      ),
      'NAME_CONFLICT',
    );
  });

  it('allows renaming into a name freed in the same transaction', () => {
    const store = new MemoryStore();
    store.apply(new TransactionBuilder(0).create('service', service('s1', 'web')).build());
    const old = store.get('service', 's1')!;
    store.apply(
      new TransactionBuilder(0).delete('service', old).create('service', service('s2', 'web')).build(),
    );
    assert.deepEqual(
      store.find('service', 'name', 'web').map((s) => s.meta?.id),
      ['s2'],
    );
  });

  it('refuses a transaction over the action limit with an error that says the limit', () => {
    const store = new MemoryStore({ maxActionsPerTransaction: 3 });
    const tx = new TransactionBuilder(0);
    for (let i = 0; i < 4; i++) tx.create('task', task(`t${i}`, 's1', i + 1));
    assert.throws(() => store.apply(tx.build()), /4 actions; at most 3/);
  });

  it('refuses a transaction over the byte limit', () => {
    const store = new MemoryStore({ maxTransactionBytes: 200 });
    const tx = new TransactionBuilder(0);
    for (let i = 0; i < 10; i++) tx.create('task', task(`task-${i}`, 'service-1', i + 1));
    assert.equal(
      errCode(() => store.apply(tx.build())),
      'TRANSACTION_TOO_LARGE',
    );
  });

  it('keeps indexes by service, node, slot and desired state in step with updates', () => {
    const store = new MemoryStore();
    store.apply(
      new TransactionBuilder(0)
        .create('task', task('t1', 's1', 1))
        .create('task', task('t2', 's1', 2))
        .build(),
    );
    const t1 = structuredClone(store.get('task', 't1')!);
    t1.nodeId = 'n1';
    t1.desiredState = TaskState.TASK_STATE_SHUTDOWN;
    store.apply(new TransactionBuilder(0).update('task', t1).build());
    assert.deepEqual(
      store.find('task', 'service', 's1').map((t) => t.meta?.id),
      ['t1', 't2'],
    );
    assert.deepEqual(
      store.find('task', 'node', 'n1').map((t) => t.meta?.id),
      ['t1'],
    );
    assert.deepEqual(
      store.find('task', 'slot', 's1/2').map((t) => t.meta?.id),
      ['t2'],
    );
    assert.deepEqual(
      store.find('task', 'desired', String(TaskState.TASK_STATE_RUNNING)).map((t) => t.meta?.id),
      ['t2'],
    );
  });

  it('is deterministic: the same transactions give the same snapshot bytes', () => {
    const run = () => {
      const store = new MemoryStore();
      store.apply(new TransactionBuilder(10).create('service', service('s1', 'web')).build());
      store.apply(
        new TransactionBuilder(20)
          .create('task', task('t2', 's1', 2))
          .create('task', task('t1', 's1', 1))
          .build(),
      );
      return StoreSnapshot.encode(store.snapshot()).finish();
    };
    assert.deepEqual(run(), run());
  });
});

describe('store task history', () => {
  it('keeps at most 5 terminated tasks per slot by default, deleting the oldest', () => {
    const store = new MemoryStore();
    for (let i = 0; i < 8; i++) {
      const t = task(`t${i}`, 's1', 1, TaskState.TASK_STATE_FAILED);
      t.desiredState = TaskState.TASK_STATE_SHUTDOWN;
      store.apply(new TransactionBuilder(i * 1000).create('task', t).build());
    }
    assert.deepEqual(
      store.find('task', 'slot', 's1/1').map((t) => t.meta?.id),
      ['t3', 't4', 't5', 't6', 't7'],
    );
  });

  it('never prunes a task that is still wanted or still running', () => {
    const store = new MemoryStore({ defaultTaskHistoryLimit: 1 });
    const tx = new TransactionBuilder(0);
    for (let i = 0; i < 4; i++) tx.create('task', task(`t${i}`, 's1', 1, TaskState.TASK_STATE_RUNNING));
    store.apply(tx.build());
    assert.equal(store.find('task', 'slot', 's1/1').length, 4);
  });
});

describe('store watch, snapshot and proposer', () => {
  it('delivers typed events after the commit, filtered by kind and action', () => {
    const store = new MemoryStore();
    const seen: string[] = [];
    store.watch({ kinds: ['task'], actions: ['create'] }, (e: StoreEvent) => {
      if (e.type === 'object') seen.push(`${e.kind}:${e.action}:${e.object.meta?.id}`);
      else seen.push(e.type);
    });
    store.apply(
      new TransactionBuilder(0)
        .create('service', service('s1', 'web'))
        .create('task', task('t1', 's1', 1))
        .build(),
    );
    assert.deepEqual(seen, ['task:create:t1', 'commit']);
  });

  it('closes a watch queue whose consumer falls too far behind', () => {
    const store = new MemoryStore();
    const q = new WatchQueue(store, { kinds: ['task'] }, 3);
    for (let i = 0; i < 4; i++)
      store.apply(new TransactionBuilder(0).create('task', task(`t${i}`, 's1', i + 1)).build());
    assert.throws(() => q.drain(), /fell more than 3 events behind/);
  });

  it('restores a snapshot into an identical store', () => {
    const a = new MemoryStore();
    a.apply(
      new TransactionBuilder(0)
        .create('service', service('s1', 'web'))
        .create('task', task('t1', 's1', 1))
        .build(),
    );
    const bytes = StoreSnapshot.encode(a.snapshot()).finish();
    const b = new MemoryStore();
    b.restore(StoreSnapshot.decode(bytes));
    assert.equal(b.index, a.index);
    assert.deepEqual(
      b.find('task', 'service', 's1').map((t) => t.meta?.id),
      ['t1'],
    );
    assert.deepEqual(StoreSnapshot.encode(b.snapshot()).finish(), bytes);
  });

  it('round-trips transactions through bytes in the in-memory proposer', async () => {
    const store = new MemoryStore();
    const tx = new TransactionBuilder(7).create('task', task('t1', 's1', 1)).build();
    assert.deepEqual(decodeTransaction(encodeTransaction(tx)), tx);
    await new InMemoryProposer(store).propose(tx);
    assert.equal(store.get('task', 't1')?.meta?.createdAt?.unixMs, 7);
  });
});
