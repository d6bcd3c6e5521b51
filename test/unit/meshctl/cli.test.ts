import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type {
  CreateServiceRequest,
  UpdateNodeRequest,
  UpdateServiceRequest,
} from '../../../src/api/gen/meshd/v1/control.js';
import { LogStream } from '../../../src/api/gen/meshd/v1/logs.js';
import { NodeAvailability, NodeRole, TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { runMeshctl } from '../../../src/meshctl/cli.js';
import { connectSocket } from '../../../src/meshctl/client.js';
import { waitFor } from '../../lib/wait.js';
import { FakeMeshd } from './fake-control.js';

interface Run {
  code: number;
  out: string;
  err: string;
  meshdArgs: string[][];
}

let fake: FakeMeshd;

async function meshctl(...argv: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const meshdArgs: string[][] = [];
  let now = 1_000_000;
  const code = await runMeshctl(['--socket', fake.socketPath, ...argv], {
    output: { out: (l) => out.push(l), err: (l) => err.push(l) },
    connect: connectSocket,
    // Time runs 100x fast so the 5-minute wait bound is reached in a few polls.
    sleep: async (ms) => {
      now += ms * 100;
    },
    nowMs: () => now,
    runMeshd: async (args) => {
      meshdArgs.push(args);
      return args.includes('--fail') ? 3 : 0;
    },
  });
  return { code, out: out.join('\n'), err: err.join('\n'), meshdArgs };
}

function lastRequest<T>(method: string): T {
  const r = fake.requests.filter((x) => x.method === method).at(-1);
  assert.ok(r, `no ${method} request`);
  return r.request as T;
}

describe('meshctl against a fake control API on a Unix socket', () => {
  before(async () => {
    fake = new FakeMeshd();
    await fake.start();
  });
  after(async () => {
    await fake.stop();
  });
  beforeEach(() => {
    fake.nodes = [];
    fake.services = [];
    fake.tasks = [];
    fake.networks = [];
    fake.requests.length = 0;
    fake.onListTasks = () => {};
  });

  it('node ls prints a table with state, availability and role in words', async () => {
    fake.addNode('n1aaaaaaaaaaaaaaaa', 'host1', NodeRole.NODE_ROLE_MANAGER);
    fake.addNode('n2bbbbbbbbbbbbbbbb', 'host2');
    const r = await meshctl('node', 'ls');
    assert.equal(r.code, 0, r.err);
    const lines = r.out.split('\n');
    assert.match(lines[0] ?? '', /^ID\s+HOSTNAME\s+STATUS\s+AVAILABILITY\s+ROLE/);
    assert.match(lines[1] ?? '', /^n1aaaaaaaaaa\s+host1\s+ready\s+active\s+manager/);
    assert.match(lines[2] ?? '', /host2\s+ready\s+active\s+worker/);
  });

  it('--format json prints proto3 JSON that parses', async () => {
    fake.addNode('n1aaaaaaaaaaaaaaaa', 'host1');
    const r = await meshctl('--format', 'json', 'node', 'ls');
    const parsed = JSON.parse(r.out) as { hostname: string; state: string }[];
    assert.equal(parsed[0]?.hostname, 'host1');
    assert.equal(parsed[0]?.state, 'NODE_STATE_READY');
  });

  it('an unknown --format is a one-line error naming the flag', async () => {
    const r = await meshctl('--format', 'yaml', 'node', 'ls');
    assert.equal(r.code, 1);
    assert.equal(r.err, 'meshctl: --format must be table or json, got "yaml"');
  });

  it('node update --availability drain sends the version read and the new availability', async () => {
    fake.addNode('n1aaaaaaaaaaaaaaaa', 'host1');
    const r = await meshctl('node', 'update', '--availability', 'drain', '--label-add', 'zone=a', 'host1');
    assert.equal(r.code, 0, r.err);
    const req = lastRequest<UpdateNodeRequest>('updateNode');
    assert.equal(req.node, 'n1aaaaaaaaaaaaaaaa');
    assert.equal(req.version, 7);
    assert.equal(req.availability, NodeAvailability.NODE_AVAILABILITY_DRAIN);
    assert.deepEqual(req.labelsAdd, { zone: 'a' });
  });

  it('node update with a wrong availability or nothing to change fails before calling meshd', async () => {
    fake.addNode('n1aaaaaaaaaaaaaaaa', 'host1');
    const bad = await meshctl('node', 'update', '--availability', 'off', 'host1');
    assert.match(bad.err, /^meshctl: --availability must be one of active, pause, drain; got "off"$/);
    const none = await meshctl('node', 'update', 'host1');
    assert.match(none.err, /nothing to change/);
    assert.equal(fake.requests.filter((x) => x.method === 'updateNode').length, 0);
  });

  it('an unknown node is a one-line error that says where to look', async () => {
    const r = await meshctl('node', 'promote', 'ghost');
    assert.equal(r.code, 1);
    assert.equal(r.err, 'meshctl: node "ghost" not found; see "meshctl node ls" for what exists');
  });

  it('promote and demote change the role', async () => {
    fake.addNode('n1aaaaaaaaaaaaaaaa', 'host1');
    await meshctl('node', 'promote', 'host1');
    assert.equal(lastRequest<UpdateNodeRequest>('updateNode').role, NodeRole.NODE_ROLE_MANAGER);
    await meshctl('node', 'demote', 'host1');
    assert.equal(lastRequest<UpdateNodeRequest>('updateNode').role, NodeRole.NODE_ROLE_WORKER);
  });

  it('node rm deletes the node, then puts its ID on the CA denylist so every manager refuses it', async () => {
    fake.addNode('n2bbbbbbbbbbbbbbbb', 'host2');
    const r = await meshctl('node', 'rm', '--force', 'host2');
    assert.equal(r.code, 0, r.err);
    const methods = fake.requests
      .map((x) => x.method)
      .filter((m) => m === 'deleteNode' || m === 'removeNode');
    assert.deepEqual(methods, ['deleteNode', 'removeNode']);
    assert.deepEqual(lastRequest('removeNode'), { nodeId: 'n2bbbbbbbbbbbbbbbb' });
  });

  it('service create --detach sends the spec from the flags and prints the ID only', async () => {
    const r = await meshctl(
      'service',
      'create',
      '--detach',
      '--name',
      'web',
      '--replicas',
      '5',
      '-p',
      '8080:80',
      '--',
      '/usr/bin/web',
      '--port',
      '80',
    );
    assert.equal(r.code, 0, r.err);
    const req = lastRequest<CreateServiceRequest>('createService');
    assert.equal(req.spec?.replicas, 5);
    assert.deepEqual(req.spec?.task?.command, ['/usr/bin/web', '--port', '80']);
    assert.equal(req.spec?.endpoint?.ports[0]?.publishedPort, 8080);
    assert.equal(r.out, 'svc1abcdefghijkl');
    assert.equal(fake.requests.filter((x) => x.method === 'listTasks').length, 0);
  });

  it('service create waits and shows "n/N tasks running" until converged', async () => {
    let polls = 0;
    fake.onListTasks = () => {
      const s = fake.services[0];
      if (s === undefined) return;
      polls += 1;
      if (polls === 2) for (let i = 1; i <= 3; i++) fake.addTask(s, i, TaskState.TASK_STATE_RUNNING);
      if (polls === 3) for (let i = 4; i <= 5; i++) fake.addTask(s, i, TaskState.TASK_STATE_RUNNING);
    };
    const r = await meshctl('service', 'create', '--name', 'web', '--replicas', '5', '--', '/usr/bin/web');
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.out.split('\n').slice(1), [
      'web: 0/5 tasks running',
      'web: 3/5 tasks running',
      'web: 5/5 tasks running',
      'web: converged',
    ]);
  });

  it('a service that never converges gives up with a pointer to service ps', async () => {
    const r = await meshctl('service', 'create', '--name', 'web', '--replicas', '2', '--', '/usr/bin/web');
    assert.equal(r.code, 1);
    assert.match(
      r.err,
      /^meshctl: web not converged after 300 s \(0\/2 running\): see "meshctl service ps web"$/,
    );
  });

  it('a bad flag names the flag; a spec the API refuses comes back on one line', async () => {
    const flag = await meshctl(
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      'many',
      '--',
      '/usr/bin/web',
    );
    assert.equal(flag.code, 1);
    assert.match(flag.err, /^meshctl: .*replicas.*"many"/);
    assert.equal(flag.err.split('\n').length, 1);
    const api = await meshctl('service', 'create', '-d', '--name', 'web', '--', '--bad');
    assert.equal(api.err, 'meshctl: spec.task.command[0]: "--bad" is not an absolute path; use /usr/bin/...');
  });

  it('service ls shows running/wanted replicas and published ports', async () => {
    await meshctl(
      'service',
      'create',
      '-d',
      '--name',
      'web',
      '--replicas',
      '3',
      '-p',
      '8080:80',
      '--',
      '/usr/bin/web',
    );
    const s = fake.services[0];
    assert.ok(s);
    fake.addTask(s, 1, TaskState.TASK_STATE_RUNNING);
    fake.addTask(s, 2, TaskState.TASK_STATE_STARTING);
    const r = await meshctl('service', 'ls');
    assert.match(r.out.split('\n')[1] ?? '', /^svc1abcdefgh\s+web\s+replicated\s+1\/3\s+\*:8080->80\/tcp$/);
  });

  it('service ps names tasks name.slot on their node hostname', async () => {
    fake.addNode('n1aaaaaaaaaaaaaaaa', 'host1');
    await meshctl('service', 'create', '-d', '--name', 'web', '--', '/usr/bin/web');
    const s = fake.services[0];
    assert.ok(s);
    fake.addTask(s, 1, TaskState.TASK_STATE_RUNNING);
    const r = await meshctl('service', 'ps', 'web');
    assert.match(
      r.out.split('\n')[1] ?? '',
      /^tasksvc1abcd\s+web\.1\s+host1\s+running\s+running \d+ (seconds|minutes|hours|days) ago$/,
    );
  });

  it('service update --replicas and --env-add change only those fields of the current spec', async () => {
    await meshctl('service', 'create', '-d', '--name', 'web', '-e', 'A=1', '-e', 'B=2', '--', '/usr/bin/web');
    const r = await meshctl(
      'service',
      'update',
      '-d',
      '--replicas',
      '4',
      '--env-add',
      'A=9',
      '--env-rm',
      'B',
      'web',
    );
    assert.equal(r.code, 0, r.err);
    const req = lastRequest<UpdateServiceRequest>('updateService');
    assert.equal(req.version, 3);
    assert.equal(req.spec?.replicas, 4);
    assert.deepEqual(req.spec?.task?.env, ['A=9']);
    assert.deepEqual(req.spec?.task?.command, ['/usr/bin/web']);
  });

  it('service scale takes NAME=N pairs and refuses a bad count', async () => {
    await meshctl('service', 'create', '-d', '--name', 'web', '--', '/usr/bin/web');
    const ok = await meshctl('service', 'scale', '-d', 'web=7');
    assert.equal(ok.out, 'web scaled to 7');
    const bad = await meshctl('service', 'scale', 'web=-1');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /replicas/);
  });

  it('service logs prints every task line with its task@node prefix, stderr lines on stderr, warnings on stderr', async () => {
    const context = (taskId: string, slot: number, nodeName: string) => ({
      serviceId: 'svc1',
      serviceName: 'web',
      taskId,
      slot,
      nodeId: `${nodeName}-id`,
      nodeName,
    });
    fake.logResponses = [
      {
        messages: [
          {
            context: context('task1abcdefghij', 1, 'node1'),
            stream: LogStream.LOG_STREAM_STDOUT,
            data: Buffer.from('hello'),
          },
          {
            context: context('task2abcdefghij', 2, 'node3'),
            stream: LogStream.LOG_STREAM_STDERR,
            data: Buffer.from('oops'),
          },
        ],
        warnings: [],
      },
      {
        messages: [],
        warnings: ['node node2 (abc) did not answer within 5 s: logs of its 1 task are missing'],
      },
    ];
    const r = await meshctl('service', 'logs', '--tail', '1', 'web');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'web.1.task1abcdefg@node1 | hello');
    assert.deepEqual(r.err.split('\n'), [
      'web.2.task2abcdefg@node3 | oops',
      'warning: node node2 (abc) did not answer within 5 s: logs of its 1 task are missing',
    ]);
    assert.deepEqual(lastRequest('SubscribeLogs'), { service: 'web', follow: false, tail: 1 });
    const short = await meshctl('service', 'logs', '--no-task-ids', 'web');
    assert.equal(short.out, 'web.1@node1 | hello');
    assert.equal(lastRequest<{ tail?: number }>('SubscribeLogs').tail, undefined);
    const raw = await meshctl('service', 'logs', '--raw', 'web');
    assert.equal(raw.out, 'hello');
    const bad = await meshctl('service', 'logs', '--tail', '-2', 'web');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /--tail must be an integer 0\.\.1000000, got "-2"/);
  });

  it('service logs --follow prints lines as they come and ends cleanly on an interrupt', async () => {
    fake.logsCancelled = false;
    fake.logResponses = [
      {
        messages: [
          {
            context: {
              serviceId: 's',
              serviceName: 'web',
              taskId: 'task1abcdefghij',
              slot: 1,
              nodeId: 'n',
              nodeName: 'node1',
            },
            stream: LogStream.LOG_STREAM_STDOUT,
            data: Buffer.from('live'),
          },
        ],
        warnings: [],
      },
    ];
    let interrupt: (() => void) | undefined;
    const out: string[] = [];
    const done = runMeshctl(['--socket', fake.socketPath, 'service', 'logs', '-f', 'web'], {
      output: { out: (l) => out.push(l), err: () => {} },
      connect: connectSocket,
      sleep: async () => {},
      nowMs: () => 0,
      runMeshd: async () => 0,
      onInterrupt: (fn) => {
        interrupt = fn;
        return () => {
          interrupt = undefined;
        };
      },
    });
    await waitFor('the followed line', () => out.includes('web.1.task1abcdefg@node1 | live'), 10_000);
    interrupt?.();
    assert.equal(await done, 0);
    await waitFor('the server saw the cancel', () => fake.logsCancelled, 10_000);
    assert.equal(interrupt, undefined);
  });

  it('network create sends subnet, options and labels; ls shows subnet and VNI', async () => {
    const c = await meshctl(
      'network',
      'create',
      '--subnet',
      '10.9.0.0/24',
      '-o',
      'encrypted=true',
      'backend',
    );
    assert.equal(c.code, 0, c.err);
    const r = await meshctl('network', 'ls');
    assert.match(r.out.split('\n')[1] ?? '', /^net1xxxxxxxx\s+backend\s+overlay\s+10\.9\.0\.0\/24\s+4097$/);
    const missing = await meshctl('network', 'inspect', 'nope');
    assert.equal(missing.err, 'meshctl: network "nope" not found; see "meshctl network ls" for what exists');
  });

  it('join-token prints the command to run; --rotate replaces it; -q prints the token only', async () => {
    fake.addNode('n1aaaaaaaaaaaaaaaa', 'host1', NodeRole.NODE_ROLE_MANAGER);
    const show = await meshctl('join-token', 'worker');
    assert.match(show.out, /meshctl join --token MESHTKN-1-aaaa-worker 10\.0\.0\.1:4242/);
    const rotated = await meshctl('join-token', '--rotate', '-q', 'worker');
    assert.equal(rotated.out, 'MESHTKN-1-aaaa-rotated');
    const bad = await meshctl('join-token', 'admin');
    assert.equal(bad.err, 'meshctl: join-token takes worker or manager, got "admin"');
  });

  it('init, join and leave hand their arguments to meshd and report its failure', async () => {
    const j = await meshctl('join', '--token', 'T', '10.0.0.1:4242');
    assert.equal(j.code, 0);
    assert.deepEqual(j.meshdArgs, [['join', '--token', 'T', '10.0.0.1:4242']]);
    const f = await meshctl('init', '--fail');
    assert.equal(f.code, 1);
    assert.match(f.err, /"meshd init" exited with code 3/);
  });

  it('a missing socket says to start meshd; usage errors exit 2', async () => {
    const out: string[] = [];
    const code = await runMeshctl(['--socket', join(fake.dir, 'none.sock'), 'service', 'ls'], {
      output: { out: (l) => out.push(l), err: (l) => out.push(l) },
      connect: connectSocket,
      sleep: async () => {},
      nowMs: () => 0,
      runMeshd: async () => 0,
    });
    assert.equal(code, 1);
    assert.match(out.join('\n'), /^meshctl: cannot reach meshd at .*none\.sock: start it with "meshd run"/);
    assert.equal((await meshctl('service', 'frobnicate')).code, 2);
  });
});
