import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import * as control from '../../../src/api/gen/meshd/v1/control.js';
import { ServiceMode, ServiceSpec, TaskState } from '../../../src/api/gen/meshd/v1/objects.js';
import { mintTlsFixture } from '../raft/transport/tls-fixture.js';

const IDS = ['m1', 'm2', 'm3'];
const script = fileURLToPath(new URL('./manager-process.ts', import.meta.url));

interface Proc {
  id: string;
  child: ChildProcess;
  raftPort: number;
  client: control.ControlServiceClient;
  next(): Promise<Record<string, unknown>>;
  send(obj: Record<string, unknown>): void;
}

function call<Res>(client: control.ControlServiceClient, method: string, req: unknown): Promise<Res> {
  const fn = (client as unknown as Record<string, (...args: unknown[]) => void>)[method]!.bind(client);
  return new Promise((resolve, reject) =>
    fn(req, new Metadata(), { deadline: Date.now() + 20_000 }, (err: ServiceError | null, res: Res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

/** Three manager OS processes; the leader is killed with SIGKILL. Bounded: every wait has a deadline. */
describe('managers as processes: kill -9 of the leader', () => {
  const root = mkdtempSync(join(tmpdir(), 'meshd-mgrproc-'));
  const procs: Proc[] = [];
  after(() => {
    for (const p of procs) {
      p.client.close();
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
    }
    rmSync(root, { recursive: true, force: true });
  });

  async function spawnManager(id: string, files: ReturnType<ReturnType<typeof mintTlsFixture>['writeTo']>) {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: {
        ...process.env,
        LOG_LEVEL: process.env['DEBUG_MANAGER_PROCS'] === '1' ? 'info' : 'warn',
        MESHD_MANAGER_CONFIG: JSON.stringify({ id, dataDir: join(root, id), voters: IDS, ...files }),
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    // pino writes warnings to stdout too; replies are the lines without a level.
    const next = async (): Promise<Record<string, unknown>> => {
      for (;;) {
        const r = await lines.next();
        if (r.done) throw new Error(`manager ${id} exited`);
        const obj = JSON.parse(r.value) as Record<string, unknown>;
        if (!('level' in obj)) return obj;
        if (process.env['DEBUG_MANAGER_PROCS'] === '1') console.error(id, r.value);
      }
    };
    const up = await next();
    const client = new control.ControlServiceClient(`127.0.0.1:${up['apiPort']}`, tlsCreds());
    return {
      id,
      child,
      raftPort: up['raftPort'] as number,
      client,
      next,
      send: (obj: Record<string, unknown>) => child.stdin!.write(`${JSON.stringify(obj)}\n`),
    } satisfies Proc;
  }

  let tlsCreds: () => ReturnType<ReturnType<typeof mintTlsFixture>['channelCredentials']>;

  async function leader(among: Proc[], timeoutMs: number): Promise<Proc> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const p of among) {
        p.send({ op: 'status' });
        if ((await p.next())['leader'] === true) return p;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('no leader in time');
  }

  it('the API keeps answering, writes commit, and no task is lost', { timeout: 90_000 }, async () => {
    const tls = mintTlsFixture();
    tlsCreds = () => tls.channelCredentials();
    const files = tls.writeTo(root);
    for (const id of IDS) procs.push(await spawnManager(id, files));
    const peers = Object.fromEntries(procs.map((p) => [p.id, `127.0.0.1:${p.raftPort}`]));
    for (const p of procs) p.send({ op: 'peers', peers });

    const first = await leader(procs, 20_000);
    first.send({ op: 'bootstrap' });
    assert.deepEqual(await first.next(), { bootstrapped: true });
    const follower = procs.find((p) => p !== first)!;
    const spec = ServiceSpec.fromPartial({
      name: 'web',
      mode: ServiceMode.SERVICE_MODE_REPLICATED,
      replicas: 4,
      task: { command: ['app'] },
    });
    await call(follower.client, 'createService', { spec });
    const liveTasks = async (p: Proc) => {
      const { tasks } = await call<control.ListTasksResponse>(
        p.client,
        'listTasks',
        control.ListTasksRequest.fromPartial({ service: 'web' }),
      );
      // Placement depends on node states (a leader elected after the workers
      // registered marks them UNKNOWN until agents report; none run here).
      return tasks.filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING);
    };
    const deadline = Date.now() + 20_000;
    let before = await liveTasks(follower);
    while (before.length < 4 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      before = await liveTasks(follower);
    }
    assert.equal(before.length, 4);

    first.child.kill('SIGKILL');
    const survivors = procs.filter((p) => p !== first);
    // Reads wait out the election (the API retries its ReadIndex barrier).
    const { services } = await call<control.ListServicesResponse>(
      survivors[0]!.client,
      'listServices',
      control.ListServicesRequest.fromPartial({}),
    );
    assert.deepEqual(
      services.map((s) => s.spec?.name),
      ['web'],
    );
    await call(
      survivors[1]!.client,
      'createNetwork',
      control.CreateNetworkRequest.fromPartial({ name: 'after' }),
    );
    await leader(survivors, 20_000);
    const after = await liveTasks(survivors[1]!);
    assert.deepEqual(after.map((t) => t.meta?.id).sort(), before.map((t) => t.meta?.id).sort(), 'same tasks');
  });
});
