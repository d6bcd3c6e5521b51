import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planAllocation } from '../../../controlplane/allocator/allocator.js';
import { checkPublishedPorts } from '../../../controlplane/allocator/validate.js';
import type { MemoryStore } from '../../../controlplane/store/memory-store.js';
import { TransactionBuilder } from '../../../controlplane/store/transaction.js';
import { PublishMode } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { ValidationError } from '../../../src/common/errors.js';
import { create, network, newStore, newTask, node, port, service } from './fixtures.js';

function allocate(store: MemoryStore): void {
  for (let i = 0; i < 5; i++) {
    const tx = planAllocation(store, 1000);
    if (tx === undefined) return;
    store.apply(tx.build());
  }
  assert.fail('allocator did not settle in 5 passes');
}

describe('allocator: networks', () => {
  it('allocates the ingress network created at init with its subnet, gateway and the first VNI 4096', () => {
    const store = newStore();
    allocate(store);
    const ingress = store.get('network', 'ingress')!;
    assert.equal(ingress.subnet, '10.255.0.0/16');
    assert.equal(ingress.gateway, '10.255.0.1');
    assert.equal(ingress.vni, 4096);
  });

  it('carves /20 subnets by default (larger than /24) and never reuses a VNI', () => {
    const store = newStore();
    create(store, ['network', network('n1', 'app')], ['network', network('n2', 'db')]);
    allocate(store);
    assert.equal(store.get('network', 'n1')!.subnet, '10.0.0.0/20');
    assert.equal(store.get('network', 'n2')!.subnet, '10.0.16.0/20');
    const vnis = store.list('network').map((n) => n.vni);
    assert.equal(new Set(vnis).size, 3);
    assert.ok(vnis.every((v) => v >= 4096));
  });

  it('uses the cluster subnet size and address pools when set', () => {
    const store = newStore({ subnetSize: 24, defaultAddressPools: ['172.20.0.0/16'] });
    create(store, ['network', network('n1', 'app')]);
    allocate(store);
    assert.equal(store.get('network', 'n1')!.subnet, '172.20.0.0/24');
  });

  it('refuses a requested subnet that overlaps another network, on the network object', () => {
    const store = newStore();
    create(store, ['network', network('n1', 'app', '10.255.3.0/24')]);
    allocate(store);
    const n = store.get('network', 'n1')!;
    assert.equal(n.subnet, '');
    assert.match(n.allocationMessage, /overlaps 10\.255\.0\.0\/16/);
  });
});

describe('allocator: services and tasks', () => {
  it('gives a service a VIP on each network plus ingress, and a published port from 30000 when none is requested', () => {
    const store = newStore();
    create(store, ['network', network('n1', 'app')]);
    create(store, [
      'service',
      service('web', { networks: ['n1'], endpoint: { mode: 0, ports: [port(80)] } }),
    ]);
    allocate(store);
    const s = store.get('service', 'web')!;
    assert.deepEqual(
      s.vips.map((v) => v.networkId),
      ['n1', 'ingress'],
    );
    assert.equal(s.vips[0]!.address, '10.0.0.2/20');
    assert.equal(s.ports[0]!.publishedPort, 30000);
    assert.equal(s.ports[0]!.publishMode, PublishMode.PUBLISH_MODE_INGRESS);
  });

  it('refuses at the API a published port another service holds, naming the holder', () => {
    const store = newStore();
    create(store, ['service', service('web', { endpoint: { mode: 0, ports: [port(80, 8080)] } })]);
    allocate(store);
    const spec = service('api', { endpoint: { mode: 0, ports: [port(81, 8080)] } }).spec!;
    assert.throws(
      () => checkPublishedPorts(store, spec, 'api'),
      (err: unknown) =>
        err instanceof ValidationError && /8080\/tcp is already published by service "web"/.test(err.message),
    );
    const udp = service('dns', { endpoint: { mode: 0, ports: [port(53, 8080, { protocol: 2 })] } }).spec!;
    checkPublishedPorts(store, udp, 'dns');
  });

  it('moves a new task to PENDING with one address and MAC per network, all distinct', () => {
    const store = newStore();
    create(store, ['network', network('n1', 'app')]);
    create(
      store,
      ['service', service('web', { networks: ['n1'] })],
      ['task', newTask('t1', 'web', 1)],
      ['task', newTask('t2', 'web', 2)],
    );
    allocate(store);
    const t1 = store.get('task', 't1')!;
    const t2 = store.get('task', 't2')!;
    assert.equal(t1.status?.state, TaskState.TASK_STATE_PENDING);
    assert.equal(t1.networks.length, 1);
    assert.notEqual(t1.networks[0]!.address, t2.networks[0]!.address);
    assert.match(t1.networks[0]!.mac, /^02:42:0a:00:00:0[0-9a-f]$/);
  });

  it('shows address exhaustion on the task status, and keeps the task NEW', () => {
    const store = newStore();
    create(store, ['network', network('n1', 'app', '10.0.3.0/29')]);
    const tasks = [1, 2, 3, 4, 5].map(
      (i) => ['task', newTask(`t${i}`, 'web', i)] as ['task', ReturnType<typeof newTask>],
    );
    create(store, ['service', service('web', { networks: ['n1'] })], ...tasks);
    allocate(store);
    const states = [1, 2, 3, 4, 5].map((i) => store.get('task', `t${i}`)!.status!);
    // /29: 6 hosts, minus gateway and VIP, leaves 4 task addresses.
    assert.equal(states.filter((s) => s.state === TaskState.TASK_STATE_PENDING).length, 4);
    const stuck = states.find((s) => s.state === TaskState.TASK_STATE_NEW)!;
    assert.equal(stuck.message, 'no free address in 10.0.3.0/29 for network app');
  });

  it('releases a task address only when the task has really stopped, not when asked to stop', () => {
    const store = newStore();
    create(store, ['network', network('n1', 'app', '10.0.3.0/29')]);
    const tasks = [1, 2, 3, 4].map(
      (i) => ['task', newTask(`t${i}`, 'web', i)] as ['task', ReturnType<typeof newTask>],
    );
    create(store, ['service', service('web', { networks: ['n1'] })], ...tasks);
    allocate(store);
    const stopping = structuredClone(store.get('task', 't1')!);
    stopping.desiredState = TaskState.TASK_STATE_SHUTDOWN;
    stopping.status!.state = TaskState.TASK_STATE_RUNNING;
    store.apply(
      new TransactionBuilder(0)
        .update('task', stopping)
        .create('task', newTask('t5', 'web', 5))
        .build(),
    );
    allocate(store);
    assert.equal(store.get('task', 't5')!.status?.state, TaskState.TASK_STATE_NEW);
    const stopped = structuredClone(store.get('task', 't1')!);
    stopped.status!.state = TaskState.TASK_STATE_SHUTDOWN;
    store.apply(new TransactionBuilder(0).update('task', stopped).build());
    allocate(store);
    assert.equal(store.get('task', 't5')!.status?.state, TaskState.TASK_STATE_PENDING);
    assert.equal(store.get('task', 't5')!.networks[0]!.address, stopped.networks[0]!.address);
  });

  it('gives every node a load-balancer address on ingress and on the networks of its tasks', () => {
    const store = newStore();
    create(store, ['network', network('n1', 'app')], ['node', node('a')]);
    create(store, ['service', service('web', { networks: ['n1'] })], ['task', newTask('t1', 'web', 1, 'a')]);
    allocate(store);
    assert.deepEqual(
      store
        .get('node', 'a')!
        .lbAttachments.map((a) => a.networkId)
        .sort(),
      ['ingress', 'n1'],
    );
  });
});
