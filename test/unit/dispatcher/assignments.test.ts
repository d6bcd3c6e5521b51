import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { desiredStateForNode, macFor, taskName } from '../../../controlplane/dispatcher/assignments.js';
import { EndpointState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { NodeState, TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { cluster, node, service, task } from './fixtures.js';

const RUNNING = TaskState.TASK_STATE_RUNNING;
const t1 = task('t1', 'web', 'n1', 1, RUNNING, { app: '10.0.1.10/24', ingress: '10.255.0.10/16' });
const t2 = task('t2', 'web', 'n2', 2, RUNNING, { app: '10.0.1.11/24', ingress: '10.255.0.11/16' });

describe("assignments: a node's data-plane desired state", () => {
  it('a node with no tasks still takes part in ingress and balances published ports to every task', () => {
    const state = desiredStateForNode(cluster([t1, t2]), 'n3', 7);
    assert.equal(state.version, 7);
    assert.deepEqual(
      state.networks.map((n) => n.name),
      ['ingress'],
    );
    assert.deepEqual(state.sandboxes, []);
    const web = state.services.find((s) => s.name === 'web');
    assert.ok(web);
    assert.deepEqual(web.vips, [{ networkId: 'ingress', address: '10.255.0.2' }]);
    assert.deepEqual(
      web.endpoints.map((e) => e.address),
      ['10.255.0.10', '10.255.0.11'],
    );
    assert.equal(web.ports[0]?.publishedPort, 30080);
    assert.deepEqual(
      state.remoteEndpoints.map((r) => `${r.address}@${r.vtep}`),
      ['10.255.0.10@192.168.50.1', '10.255.0.11@192.168.50.2'],
    );
  });

  it('a node with a task gets its sandbox, the overlay network with peers, and the other tasks as remote endpoints', () => {
    const state = desiredStateForNode(cluster([t1, t2]), 'n1', 1);
    assert.deepEqual(
      state.networks.map((n) => n.name),
      ['app', 'ingress'],
    );
    const app = state.networks.find((n) => n.name === 'app')!;
    assert.deepEqual(app.peers, [{ nodeId: 'n2', underlayAddress: '192.168.50.2' }]);
    assert.equal(app.lbAddress, '10.0.1.251');
    assert.equal(state.sandboxes.length, 1);
    assert.equal(state.sandboxes[0]?.taskName, 'web.1.t1');
    assert.deepEqual(
      state.sandboxes[0]?.attachments.map((a) => a.address),
      ['10.0.1.10', '10.255.0.10'],
    );
    assert.deepEqual(
      state.remoteEndpoints.map((r) => r.address),
      ['10.0.1.11', '10.255.0.11'],
    );
    assert.equal(state.node?.underlayAddress, '192.168.50.1');
  });

  it('a starting task has a sandbox but gets no traffic', () => {
    const starting = task('t3', 'web', 'n1', 3, TaskState.TASK_STATE_STARTING, { app: '10.0.1.12/24' });
    const state = desiredStateForNode(cluster([t1, starting]), 'n1', 1);
    assert.deepEqual(
      state.sandboxes.map((s) => s.taskId),
      ['t1', 't3'],
    );
    const web = state.services[0]!;
    assert.ok(!web.endpoints.some((e) => e.taskId === 't3'));
  });

  it('a running task desired to stop is draining: still an endpoint, marked draining', () => {
    const stopping = task(
      't2',
      'web',
      'n2',
      2,
      RUNNING,
      { app: '10.0.1.11/24' },
      TaskState.TASK_STATE_SHUTDOWN,
    );
    const state = desiredStateForNode(cluster([t1, stopping]), 'n1', 1);
    const e = state.services[0]!.endpoints.find((x) => x.taskId === 't2');
    assert.equal(e?.state, EndpointState.ENDPOINT_STATE_DRAINING);
  });

  it('a task that reached a terminal state disappears everywhere', () => {
    const dead = task('t2', 'web', 'n2', 2, TaskState.TASK_STATE_FAILED, { app: '10.0.1.11/24' });
    const state = desiredStateForNode(cluster([t1, dead]), 'n1', 1);
    assert.ok(!state.remoteEndpoints.some((r) => r.taskId === 't2'));
    assert.ok(!state.services[0]!.endpoints.some((e) => e.taskId === 't2'));
    assert.deepEqual(state.networks.find((n) => n.name === 'app')?.peers, []);
  });

  it('a service on a network this node is not part of is invisible to it (except through ingress)', () => {
    const other = service('db', 'db', { vips: [{ networkId: 'app', address: '10.0.1.3' }], ports: [] });
    const dbTask = task('d1', 'db', 'n2', 1, RUNNING, { app: '10.0.1.20/24' });
    const state = desiredStateForNode(cluster([dbTask], [other]), 'n3', 1);
    assert.deepEqual(state.services, []);
  });

  it('down nodes are no ingress peers', () => {
    const view = cluster([t1]);
    view.nodes = [
      node('n1', '192.168.50.1'),
      node('n2', '192.168.50.2', NodeState.NODE_STATE_DOWN),
      node('n3', '192.168.50.3'),
    ];
    const ingress = desiredStateForNode(view, 'n1', 1).networks.find((n) => n.ingress)!;
    assert.deepEqual(
      ingress.peers.map((p) => p.nodeId),
      ['n3'],
    );
  });

  it('every manager derives the same state from the same objects, whatever their order', () => {
    const a = desiredStateForNode(cluster([t1, t2]), 'n3', 1);
    const b = desiredStateForNode(cluster([t2, t1]), 'n3', 1);
    assert.deepEqual(a, b);
  });

  it('MACs are derived from the address when the allocator gave none (02:42 + IPv4 bytes)', () => {
    assert.equal(macFor('', '10.0.1.10/24'), '02:42:0a:00:01:0a');
    assert.equal(macFor('aa:bb:cc:dd:ee:ff', '10.0.1.10/24'), 'aa:bb:cc:dd:ee:ff');
  });

  it('task names follow swarm: service.slot.id, node ID for global tasks', () => {
    assert.equal(taskName(t1, service('web', 'web')), 'web.1.t1');
    assert.equal(taskName(task('g1', 'web', 'n2', 0, RUNNING, {}), service('web', 'web')), 'web.n2.g1');
  });
});

describe('cluster view over stored objects', () => {
  it("takes each node's LB address from its lbAttachments", async () => {
    const { clusterViewOf } = await import('../../../controlplane/dispatcher/assignments.js');
    const n1 = node('n1', '192.168.50.1');
    n1.lbAttachments = [{ networkId: 'ingress', address: '10.255.0.250/16', mac: '' }];
    const view = clusterViewOf({ nodes: [n1], services: [], tasks: [], networks: [] });
    assert.equal(view.lbAddress('n1', 'ingress'), '10.255.0.250');
    assert.equal(view.lbAddress('n1', 'app'), undefined);
  });
});

it('service VIPs stored as CIDRs by the allocator reach the data plane as plain addresses', () => {
  const web = service('web', 'web');
  web.vips = [{ networkId: 'app', address: '10.0.1.2/24' }];
  const view = cluster(
    [task('t1', 'web', 'n1', 1, TaskState.TASK_STATE_RUNNING, { app: '10.0.1.3/24' })],
    [web],
  );
  const state = desiredStateForNode(view, 'n1', 1);
  assert.deepEqual(state.services[0]?.vips, [{ networkId: 'app', address: '10.0.1.2' }]);
});

it('tasks of a node declared DOWN are no endpoint on any node, though still observed RUNNING', () => {
  const view = cluster([
    task('t1', 'web', 'n1', 1, TaskState.TASK_STATE_RUNNING, { app: '10.0.1.3/24' }),
    task(
      't2',
      'web',
      'n2',
      2,
      TaskState.TASK_STATE_RUNNING,
      { app: '10.0.1.4/24' },
      TaskState.TASK_STATE_SHUTDOWN,
    ),
  ]);
  const down = {
    ...view,
    nodes: view.nodes.map((n) => (n.meta?.id === 'n2' ? { ...n, state: NodeState.NODE_STATE_DOWN } : n)),
  };
  const endpoints = desiredStateForNode(down, 'n1', 1).services[0]?.endpoints.map((e) => e.taskId);
  assert.deepEqual(endpoints, ['t1']);
});

describe('replies to SNATed connections', () => {
  it("every other node's LB address is a remote endpoint, so replies to it cross the overlay", () => {
    const view = cluster([t1, t2]);
    view.nodes = view.nodes.map((n) => {
      const id = n.meta?.id ?? '';
      return {
        ...n,
        lbAttachments: [
          { networkId: 'ingress', address: `10.255.0.${240 + Number(id.slice(1))}/16`, mac: '' },
        ],
      };
    });
    const state = desiredStateForNode(view, 'n3', 1);
    const lbs = state.remoteEndpoints.filter((r) => r.taskId === '');
    assert.deepEqual(
      lbs.map((r) => `${r.address}@${r.vtep}`),
      ['10.255.0.241@192.168.50.1', '10.255.0.242@192.168.50.2'],
    );
    assert.equal(lbs[0]?.mac, '02:42:0a:ff:00:f1');
  });
});
