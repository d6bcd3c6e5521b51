/**
 * Issue 9's core flow on three VMs (lab `mdve1`) with the IPVS backend: meshd
 * init on vm1, vm2 and vm3 join as workers with the token, a service with
 * replicas published on 8080 answers on every VM's address from the other
 * VMs, and every VM's IPVS tables hold its tasks. kill -9 of a worker VM's
 * meshd (and its tasks) → the tasks run on the other two, the port still
 * answers there, and the dead worker's tasks are gone from their IPVS tables.
 * `KEEP=1` leaves the lab up (and the logs in .state/mdve1-logs) for a look.
 *
 * meshd, meshctl and the namespace helpers run as bundles (test/vm/helpers.ts):
 * started with tsx each would take 15-30 s under emulation.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ExecResult, type LabVm, labName, VmLab } from '../../scripts/vmlab/lab.js';
import { MeshError } from '../../src/common/errors.js';
import { bundleProgram, phase } from './helpers.js';
import { type ParsedService, parseIpvsadmList } from './ipvsadm.js';

const LAB = labName('mdve1');
const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const TASK = join(ROOT, 'test/vm/guest/web-task.sh');
/** meshd logs (host side); kept after the run for a look, replaced by the next run. */
const LOG_DIR = join(ROOT, '.state', `${LAB}-logs`);
/** In every task's argv: a killed worker's tasks are found by it. */
const MARKER = `${LAB}-${process.pid}`;
/** At most 2 per VM: tasks land on at least two VMs, and still fit on two once a worker is gone. */
const REPLICAS = 4;
const MAX_PER_NODE = 2;
const PORT = 8080;
/** Guest paths: the guest root is a tmpfs overlay, so state starts empty every boot. */
const PIDFILE = '/run/meshd-test.pid';

describe('meshd on three VMs with the IPVS backend', () => {
  let lab: VmLab;
  let vms: [LabVm, LabVm, LabVm];
  const bin = { meshd: '', meshctl: '', netnsHelper: '', ipvsHelper: '' };

  const flags = (vm: LabVm) =>
    [
      `--listen-address ${vm.address}:4242`,
      `--raft-listen-address ${vm.address}:4243`,
      `--hostname ${vm.name}`,
      // Under emulation on a shared host meshd can stall for seconds: the default
      // 1.5 s period (down after 4.5 s) flaps sessions, the manager's own too; 5 s still did.
      '--dispatcher-heartbeat 10s',
    ].join(' ');
  const logOf = (vm: LabVm) => join(LOG_DIR, `${vm.name}.log`);
  /** meshctl on vm1; a guest too slow to answer in time is a failed call, so polls go on. */
  const meshctl = (args: string, timeoutMs = 90_000): Promise<ExecResult> =>
    lab.exec('vm1', `node ${bin.meshctl} ${args}`, { timeoutMs }).catch((err: unknown) => {
      if (err instanceof MeshError && err.code === 'VMLAB_EXEC_TIMEOUT')
        return { stdout: '', stderr: err.message, exitCode: -1 };
      throw err;
    });

  /** The last lines of every meshd log, for failure messages. */
  const logTails = (): string =>
    vms
      .map((vm) => {
        let text = '';
        try {
          text = readFileSync(logOf(vm), 'utf8');
        } catch {
          text = '(no log)';
        }
        const lines = text.trim().split('\n').slice(-8);
        return `--- ${vm.name} meshd log:\n${lines.map((l) => l.slice(0, 400)).join('\n')}`;
      })
      .join('\n');

  /** Polls `probe` until it returns a value; on timeout fails with `what`, the last probe's say and the logs. */
  async function poll<T>(
    what: string,
    probe: () => Promise<{ value?: T; say: string }>,
    timeoutMs: number,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const r = await probe();
      if (r.value !== undefined) return r.value;
      last = r.say;
      await sleep(1000);
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last}\n${logTails()}`);
  }

  async function startDaemon(vm: LabVm): Promise<void> {
    await lab.run(
      vm.name,
      `export MESHD_NETNS_HELPER_MAIN=${bin.netnsHelper} MESHD_IPVS_HELPER_MAIN=${bin.ipvsHelper}
       (setsid node ${bin.meshd} run ${flags(vm)} > ${logOf(vm)} 2>&1 < /dev/null & echo $! > ${PIDFILE})`,
    );
  }

  before(async () => {
    rmSync(LOG_DIR, { recursive: true, force: true });
    mkdirSync(LOG_DIR, { recursive: true });
    const bundles = Promise.all([
      bundleProgram(join(ROOT, 'src/meshd/main.ts'), 'meshd'),
      bundleProgram(join(ROOT, 'src/meshctl/main.ts'), 'meshctl'),
      bundleProgram(join(ROOT, 'dataplane/netns/helper-main.ts'), 'netns-helper'),
      bundleProgram(join(ROOT, 'dataplane/lb/ipvs/helper-main.ts'), 'ipvs-helper'),
    ]);
    lab = await VmLab.up(3, { name: LAB, memoryMib: 768 });
    phase('lab up');
    vms = lab.vms as [LabVm, LabVm, LabVm];
    [bin.meshd, bin.meshctl, bin.netnsHelper, bin.ipvsHelper] = await bundles;
    phase('bundles built');
    const [vm1, vm2, vm3] = vms;

    await lab.run(vm1.name, `node ${bin.meshd} init ${flags(vm1)}`, { timeoutMs: 120_000 });
    phase('vm1 init');
    await startDaemon(vm1);
    const token = await poll(
      'vm1 to serve a worker join token',
      async () => {
        const r = await meshctl('join-token -q worker');
        return r.exitCode === 0 ? { value: r.stdout.trim(), say: '' } : { say: r.stderr.trim() };
      },
      120_000,
    );
    phase('vm1 serves a join token');
    // One at a time, retried: under emulation a join's TLS handshake with a
    // busy vm1 can pass the CA client's 10 s deadline, and a failed join writes nothing.
    for (const vm of [vm2, vm3]) {
      await poll(
        `${vm.name} to join`,
        async () => {
          const r = await lab.exec(
            vm.name,
            `node ${bin.meshd} join --token ${token} ${vm1.address}:4242 ${flags(vm)}`,
            { timeoutMs: 120_000 },
          );
          return r.exitCode === 0 ? { value: true, say: '' } : { say: r.stderr.trim() };
        },
        180_000,
      );
      phase(`${vm.name} joined`);
      await startDaemon(vm);
    }
    await poll(
      'three ready nodes',
      async () => {
        const r = await meshctl('node ls');
        const ready = (r.stdout.match(/\sready\s/g) ?? []).length;
        return ready === 3 ? { value: true, say: '' } : { say: `${r.stdout}${r.stderr}` };
      },
      180_000,
    );
    phase('three ready nodes');
  });

  after(async () => {
    if (process.env['KEEP'] === '1') {
      process.stderr.write(`KEEP=1: lab ${LAB} left up; scripts/vmlab/cli.ts --lab ${LAB} down ends it\n`);
      return;
    }
    // Powering the VMs off ends meshd and every task with them.
    await lab?.down();
  });

  /** `service ps web` rows as [node, desired, current]. */
  async function tasksByNode(): Promise<{ rows: string[][]; say: string }> {
    const r = await meshctl('service ps web');
    const rows = [...r.stdout.matchAll(/web\.\d+\s+(\S+)\s+(\S+)\s+(\S+)/g)].map((m) => [
      m[1]!,
      m[2]!,
      m[3]!,
    ]);
    return { rows, say: `${r.stdout}${r.stderr}` };
  }

  /** From `client`, `count` GETs to each target's published port; answers as "vmN taskid" or an error. */
  async function requests(client: LabVm, targets: LabVm[], count: number): Promise<Map<string, string[]>> {
    const script = targets
      .map(
        (t) =>
          `for i in $(seq ${count}); do echo "${t.name} $(curl -s --max-time 5 http://${t.address}:${PORT}/ || echo FAIL)"; done`,
      )
      .join('\n');
    const out = await lab.run(client.name, script, { timeoutMs: 120_000 });
    const answers = new Map<string, string[]>();
    for (const line of out.trim().split('\n')) {
      const [target = '', ...rest] = line.split(' ');
      answers.set(target, [...(answers.get(target) ?? []), rest.join(' ')]);
    }
    return answers;
  }

  /** Every IPVS service on `vm`, in its root namespace and every namespace meshd made. */
  async function ipvsServices(vm: LabVm): Promise<ParsedService[]> {
    const out = await lab.run(
      vm.name,
      `ipvsadm -Ln
       for ns in $(ip netns list | cut -d' ' -f1); do ip netns exec "$ns" ipvsadm -Ln; done`,
    );
    return parseIpvsadmList(out);
  }

  /** Task addresses (the sandboxes' overlay/ingress addresses) on `vm`. */
  async function sandboxAddresses(vm: LabVm): Promise<string[]> {
    const out = await lab.run(
      vm.name,
      `for ns in $(ip netns list | cut -d' ' -f1 | grep '^md-t'); do ip -n "$ns" -4 -o addr show scope global; done`,
    );
    return [...out.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]!);
  }

  test(`service create --replicas ${REPLICAS} -p ${PORT}:80 converges with tasks on more than one VM`, async () => {
    const r = await meshctl(
      `service create --name web --replicas ${REPLICAS} --replicas-max-per-node ${MAX_PER_NODE} -p ${PORT}:80 -- /bin/sh ${TASK} ${MARKER}`,
      300_000,
    );
    assert.equal(r.exitCode, 0, `${r.stderr}\n${logTails()}`);
    assert.match(r.stdout, new RegExp(`web: ${REPLICAS}/${REPLICAS} tasks running`));
    const { rows, say } = await tasksByNode();
    assert.equal(
      rows.filter(([, want, now]) => want === 'running' && now === 'running').length,
      REPLICAS,
      say,
    );
    assert.ok(new Set(rows.map(([node]) => node)).size >= 2, say);
  });

  test('the published port answers on every VM from the other VMs, served by tasks on more than one VM', async () => {
    const [vm1, vm2, vm3] = vms;
    // "running" is the tasks' state; each VM's LB follows within a resync.
    const servedBy = await poll(
      'every VM to answer on the published port',
      async () => {
        const perClient = await Promise.all([
          requests(vm3, [vm1, vm2], 6),
          requests(vm1, [vm2, vm3], 6),
          requests(vm2, [vm3, vm1], 6),
        ]);
        const served = new Set<string>();
        const failures: string[] = [];
        for (const answers of perClient)
          for (const [target, lines] of answers)
            for (const line of lines) {
              if (/^vm\d \S+$/.test(line)) served.add(line.split(' ')[0]!);
              else failures.push(`${target}: ${line}`);
            }
        return failures.length === 0 ? { value: served, say: '' } : { say: failures.join(', ') };
      },
      90_000,
    );
    assert.ok(servedBy.size > 1, `answers came from tasks on ${[...servedBy].join(', ')} only`);
  });

  test(`every VM's IPVS tables hold a port-80 service over the ${REPLICAS} tasks`, async () => {
    const taskAddresses = (await Promise.all(vms.map(sandboxAddresses))).flat();
    for (const vm of vms) {
      const services = await ipvsServices(vm);
      const web = services.filter((s) => s.destinations.length === REPLICAS);
      assert.ok(
        web.length > 0,
        `${vm.name}: no IPVS service with ${REPLICAS} backends: ${JSON.stringify(services)}`,
      );
      for (const s of web)
        for (const d of s.destinations)
          assert.ok(
            taskAddresses.includes(d.address.split(':')[0]!),
            `${vm.name}: ${d.address} is no task's`,
          );
    }
  });

  test('kill -9 of a worker VM (meshd and its tasks): tasks replaced on the others, the port answers there, its tasks gone from their IPVS tables', async () => {
    const { rows } = await tasksByNode();
    // A worker that runs tasks: with at most 2 per VM, vm2 or vm3 does.
    const victim = [vms[2], vms[1]].find((vm) => rows.some(([node]) => node === vm.name))!;
    const rest = vms.filter((vm) => vm !== victim);
    const names = rest.map((vm) => vm.name);
    const victimTasks = await sandboxAddresses(victim);
    assert.ok(victimTasks.length > 0, `${victim.name} runs no task`);
    await lab.run(
      victim.name,
      `kill -9 $(cat ${PIDFILE})
       for pid in $(pgrep -f -- '${MARKER}'); do kill -9 "$pid"; done`,
    );
    await poll(
      `${victim.name} down and ${REPLICAS} tasks running on ${names.join('/')}`,
      async () => {
        const nodes = await meshctl('node ls');
        const { rows, say } = await tasksByNode();
        const running = rows.filter(
          ([node, want, now]) => names.includes(node!) && want === 'running' && now === 'running',
        );
        const victimRunning = rows.some(([node, want]) => node === victim.name && want === 'running');
        return new RegExp(`${victim.name}\\s+down`).test(nodes.stdout) &&
          running.length === REPLICAS &&
          !victimRunning
          ? { value: true, say: '' }
          : { say: `${nodes.stdout}${say}` };
      },
      180_000,
    );
    await poll(
      `${victim.name}'s tasks gone from the other VMs' IPVS tables`,
      async () => {
        const tables = await Promise.all(rest.map(ipvsServices));
        const stale = tables
          .flat()
          .flatMap((s) => s.destinations.filter((d) => victimTasks.includes(d.address.split(':')[0]!)));
        const full = tables.every((services) => services.some((s) => s.destinations.length === REPLICAS));
        return stale.length === 0 && full
          ? { value: true, say: '' }
          : { say: `stale ${stale.map((d) => d.address).join(' ')}; ${JSON.stringify(tables)}` };
      },
      90_000,
    );
    const perClient = await Promise.all(rest.map((client) => requests(client, rest, 6)));
    const failures = perClient.flatMap((answers) =>
      [...answers].flatMap(([target, lines]) =>
        lines
          .filter((l) => !names.includes(l.split(' ')[0]!) || l.split(' ').length !== 2)
          .map((l) => `${target}: ${l}`),
      ),
    );
    assert.deepEqual(failures, []);
  });
});
