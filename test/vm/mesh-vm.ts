/**
 * The issue-6 acceptance mesh (test/lib/mesh-topology.ts) on 3 lab VMs, each
 * VM one meshd host: vm1 and vm2 run tasks t1 and t2, vm3 the client sandbox
 * c3. Every VM runs guest/mesh-node.ts (the node data plane wired as in
 * `meshd run`, lb-backend auto, which picks IPVS there), driven through
 * command files in the checkout; shell work goes through `lab.run`.
 * Implements the MeshDriver the shared scenarios (test/lib/mesh-scenarios.ts) use.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LbBackendSelection } from '../../dataplane/lb/ipvs/select.js';
import { networkNetnsName, sandboxNetnsName } from '../../dataplane/overlay/names.js';
import type {
  ProgrammerView,
  ReconcileResult,
  ReconcilerStatus,
} from '../../dataplane/reconciler/reconciler.js';
import { VmLab } from '../../scripts/vmlab/lab.js';
import { DesiredState, EndpointState } from '../../src/api/gen/meshd/v1/dataplane.js';
import { MeshError, ValidationError } from '../../src/common/errors.js';
import type { MeshDriver } from '../lib/mesh-scenarios.js';
import { MESH_TASKS, type MeshHost, meshDesiredState, TASK_PORT } from '../lib/mesh-topology.js';
import type { MeshNodeCommand, MeshNodeReply } from './guest/mesh-node.js';
import { bundleProgram, phase } from './helpers.js';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const FIXTURES = join(ROOT, 'test/integration/dataplane/fixtures');
const HOST_COUNT = 3;
/** The first apply starts 4 helper processes per VM: tens of seconds each under emulation on a loaded machine. */
const CALL_TIMEOUT_MS = 240_000;
/** A guest script that starts node (a task, a client) can take a minute under emulation on a loaded machine. */
const SHELL_TIMEOUT_MS = 180_000;
/** A mesh node, 2 namespace helpers, 2 IPVS helpers and a task: node processes need more than the default. */
const GUEST_MEMORY_MIB = 640;

export class VmMesh implements MeshDriver {
  readonly lbBackend = 'ipvs';
  readonly web = new Map<string, EndpointState>([
    ['t1', EndpointState.ENDPOINT_STATE_ACTIVE],
    ['t2', EndpointState.ENDPOINT_STATE_ACTIVE],
  ]);
  /** The backend each guest selected, and why. */
  readonly selections: LbBackendSelection[] = [];
  private readonly seq = new Map<number, number>();
  private readonly hosts: MeshHost[];

  private constructor(
    readonly lab: VmLab,
    readonly dir: string,
    readonly hostPrefix: string,
  ) {
    this.hosts = lab.vms.map((vm, i) => ({ index: i + 1, address: vm.address }));
  }

  /** Boots the lab, starts a mesh node on every VM, applies every host's state and starts the tasks. */
  static async up(labName: string, hostPrefix: string): Promise<VmMesh> {
    const [lab, node, ipvsHelper, netnsHelper] = await Promise.all([
      VmLab.up(HOST_COUNT, { name: labName, memoryMib: GUEST_MEMORY_MIB }).then((lab) => {
        phase('lab up');
        return lab;
      }),
      bundleProgram(join(ROOT, 'test/vm/guest/mesh-node.ts'), 'mesh-node'),
      bundleProgram(join(ROOT, 'dataplane/lb/ipvs/helper-main.ts'), 'ipvs-helper'),
      bundleProgram(join(ROOT, 'dataplane/netns/helper-main.ts'), 'netns-helper'),
    ]);
    const dir = join(ROOT, '.state', `${labName}-${process.pid}`);
    const mesh = new VmMesh(lab, dir, hostPrefix);
    try {
      rmSync(dir, { recursive: true, force: true });
      await Promise.all(
        lab.vms.map(async (vm, i) => {
          const vmDir = mesh.vmDir(i + 1);
          mkdirSync(vmDir, { recursive: true });
          await lab.run(
            vm.name,
            `(MESHD_VM_TIMING=${process.env['MESHD_VM_TIMING'] ?? ''} node ${node} ${vmDir} ${hostPrefix} ${ipvsHelper} ${netnsHelper} > ${vmDir}/log 2>&1 &)`,
          );
        }),
      );
      for (let host = 1; host <= HOST_COUNT; host++) {
        const ready = join(mesh.vmDir(host), 'ready.json');
        await mesh.waitFile(ready, host);
        mesh.selections.push(
          (JSON.parse(readFileSync(ready, 'utf8')) as { lbBackend: LbBackendSelection }).lbBackend,
        );
      }
      phase('mesh nodes ready');
      await mesh.applyAll();
      phase('first apply on every VM');
      await Promise.all(
        MESH_TASKS.filter((t) => t.service !== null).map((t) => mesh.startTask(t.id, t.host)),
      );
      phase('tasks listening');
    } catch (err) {
      await mesh.down();
      throw err;
    }
    return mesh;
  }

  private vmDir(host: number): string {
    return join(this.dir, `vm${host}`);
  }

  private async waitFile(path: string, host: number, timeoutMs = CALL_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(path)) {
      if (Date.now() > deadline) {
        const log = join(this.vmDir(host), 'log');
        const tail = existsSync(log)
          ? readFileSync(log, 'utf8').split('\n').slice(-20).join('\n')
          : '(no log)';
        throw new Error(`vm${host}: ${path} did not appear within ${timeoutMs} ms; guest log tail:\n${tail}`);
      }
      await sleep(50);
    }
  }

  private async call(host: number, cmd: MeshNodeCommand): Promise<unknown> {
    const seq = (this.seq.get(host) ?? 0) + 1;
    this.seq.set(host, seq);
    const path = join(this.vmDir(host), `cmd-${seq}.json`);
    writeFileSync(`${path}.tmp`, JSON.stringify(cmd));
    renameSync(`${path}.tmp`, path);
    const result = join(this.vmDir(host), `res-${seq}.json`);
    await this.waitFile(result, host);
    const reply = JSON.parse(readFileSync(result, 'utf8')) as MeshNodeReply;
    if (reply.ok) return reply.value;
    if (reply.field !== null) throw new ValidationError(reply.field, reply.message);
    throw new MeshError(reply.code, `vm${host}: ${reply.message}`);
  }

  private async startTask(taskId: string, host: number): Promise<void> {
    const netns = this.sandboxNetns(taskId);
    await this.bash(
      host,
      `(ip netns exec ${netns} node ${FIXTURES}/task-server.mjs ${taskId} ${TASK_PORT} > /dev/null 2>&1 &)
       for i in $(seq 1500); do ip netns exec ${netns} ss -ltn | grep -q :${TASK_PORT} && exit 0; sleep 0.1; done; exit 1`,
      SHELL_TIMEOUT_MS,
    );
  }

  address(host: number): string {
    return this.lab.vms[host - 1]!.address;
  }

  sandboxNetns(taskId: string): string {
    return sandboxNetnsName(this.hostPrefix, taskId);
  }

  networkNetns(_host: number, networkId: string): string {
    return networkNetnsName(this.hostPrefix, networkId);
  }

  bash(host: number, script: string, timeoutMs = SHELL_TIMEOUT_MS): Promise<string> {
    return this.lab.run(`vm${host}`, script, { timeoutMs });
  }

  stateFor(host: number): DesiredState {
    return meshDesiredState({ hosts: this.hosts, index: host, web: this.web });
  }

  async applyAll(): Promise<number> {
    const results = await Promise.all(this.hosts.map((h) => this.apply(h.index, this.stateFor(h.index))));
    return results.reduce((sum, r) => sum + r.changes, 0);
  }

  async apply(host: number, state: DesiredState): Promise<ReconcileResult> {
    return (await this.call(host, { op: 'apply', state: DesiredState.toJSON(state) })) as ReconcileResult;
  }

  async resync(host: number): Promise<ReconcileResult | null> {
    return (await this.call(host, { op: 'resync' })) as ReconcileResult | null;
  }

  async view(host: number): Promise<ProgrammerView[]> {
    return (await this.call(host, { op: 'view' })) as ProgrammerView[];
  }

  async status(host: number): Promise<ReconcilerStatus> {
    return (await this.call(host, { op: 'status' })) as ReconcilerStatus;
  }

  async metrics(host: number): Promise<string> {
    return (await this.call(host, { op: 'metrics' })) as string;
  }

  /** Stops the guests' mesh nodes (best effort), powers the lab off, removes the command files. */
  async down(): Promise<void> {
    for (let host = 1; host <= HOST_COUNT; host++) {
      if (!existsSync(join(this.vmDir(host), 'ready.json'))) continue;
      await Promise.race([this.call(host, { op: 'stop' }).catch(() => {}), sleep(5_000)]);
    }
    await this.lab.down();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
