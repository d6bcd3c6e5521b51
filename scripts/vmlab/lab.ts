import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { MeshError, ValidationError } from '../../src/common/errors.js';
import { buildInitramfs } from './initramfs.js';
import { ensureKernel } from './kernel.js';

/**
 * The qemu VM lab: N guests booting a Debian kernel that has IPVS, with the
 * host's / read-only over 9p and this checkout shared read-write at the same
 * path. Guests sit on a bridge without an address inside a network namespace
 * named after the lab, so nothing they send leaves that namespace.
 *
 * State lives in <checkout>/.state/vmlab/<lab>/ (pidfiles, consoles, job
 * shares); the kernel is cached in <checkout>/.cache/vmlab/.
 */

export interface VmLabOptions {
  /** Lab name: the namespace and the prefix of every link; "mdv" + up to 7 of [a-z0-9]. */
  name?: string;
  /** The checkout shared into guests (default: this repository). */
  checkoutDir?: string;
  /** Guest RAM (default 320 MiB; a guest uses ~30 MiB idle, node needs headroom). */
  memoryMib?: number;
  /** How long to wait for all guests to report ready (default 120 s). */
  bootTimeoutMs?: number;
}

export interface LabVm {
  /** "vm1".."vmN" */
  name: string;
  /** Guest address on the lab bridge (10.77.0.1N/24). */
  address: string;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export const MAX_VMS = 5;
const DEFAULT_NAME = 'mdvlab';
const POLL_MS = 50;

function repoRoot(): string {
  return resolve(new URL('../..', import.meta.url).pathname);
}

// "mdv" + 7 + "t5" (a tap) is 12 characters: link names hold 15.
function checkName(name: string): void {
  if (!/^mdv[a-z0-9]{1,7}$/.test(name)) {
    throw new ValidationError(
      'name',
      `vmlab: lab name must be "mdv" + 1..7 of [a-z0-9] (fits link names), got "${name}"`,
    );
  }
}

/**
 * A test's or bench's fixed lab name with MESHD_VMLAB_TAG appended (unset:
 * unchanged), so runs from two checkouts on one machine never share a lab
 * namespace or link names: `MESHD_VMLAB_TAG=4` turns `mdvi1` into `mdvi14`.
 */
export function labName(base: string, tag = process.env['MESHD_VMLAB_TAG'] ?? ''): string {
  if (!/^[a-z0-9]{0,2}$/.test(tag)) {
    throw new ValidationError(
      'MESHD_VMLAB_TAG',
      `vmlab: MESHD_VMLAB_TAG must be 0..2 of [a-z0-9] (it ends lab names), got "${tag}"`,
    );
  }
  const name = `${base}${tag}`;
  checkName(name);
  return name;
}

export class VmLab {
  readonly name: string;
  readonly checkoutDir: string;
  readonly stateDir: string;
  readonly vms: LabVm[];
  private jobCounter = 0;

  private constructor(name: string, checkoutDir: string, vms: LabVm[]) {
    this.name = name;
    this.checkoutDir = checkoutDir;
    this.stateDir = join(checkoutDir, '.state', 'vmlab', name);
    this.vms = vms;
  }

  /** Boots `count` guests, after tearing down whatever a killed run of the same lab left. */
  static async up(count: number, options: VmLabOptions = {}): Promise<VmLab> {
    const name = options.name ?? DEFAULT_NAME;
    checkName(name);
    if (!Number.isInteger(count) || count < 1 || count > MAX_VMS) {
      throw new ValidationError('count', `vmlab: VM count must be an integer 1..${MAX_VMS}, got ${count}`);
    }
    const checkoutDir = resolve(options.checkoutDir ?? repoRoot());
    await VmLab.attach({ name, checkoutDir }).down();

    const vms: LabVm[] = [];
    for (let i = 1; i <= count; i++) vms.push({ name: `vm${i}`, address: `10.77.0.${10 + i}` });
    const lab = new VmLab(name, checkoutDir, vms);
    try {
      await lab.boot(options);
    } catch (err) {
      await lab.down();
      throw err;
    }
    return lab;
  }

  /** A handle on a lab another process started (CLI `exec`/`down`), read from its state dir. */
  static attach(options: VmLabOptions = {}): VmLab {
    const name = options.name ?? DEFAULT_NAME;
    checkName(name);
    const checkoutDir = resolve(options.checkoutDir ?? repoRoot());
    const stateFile = join(checkoutDir, '.state', 'vmlab', name, 'lab.json');
    let vms: LabVm[] = [];
    if (existsSync(stateFile)) vms = (JSON.parse(readFileSync(stateFile, 'utf8')) as { vms: LabVm[] }).vms;
    return new VmLab(name, checkoutDir, vms);
  }

  private async boot(options: VmLabOptions): Promise<void> {
    const kernel = await ensureKernel(join(this.checkoutDir, '.cache', 'vmlab'));
    mkdirSync(this.stateDir, { recursive: true });
    const initrd = await buildInitramfs(kernel, this.stateDir);
    const ns = this.name;
    const bridge = `${ns}br`;
    await execa('ip', ['netns', 'add', ns]);
    await execa('ip', ['-n', ns, 'link', 'add', bridge, 'type', 'bridge']);
    await execa('ip', ['-n', ns, 'link', 'set', bridge, 'up']);
    await execa('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    writeFileSync(join(this.stateDir, 'lab.json'), JSON.stringify({ vms: this.vms }, null, 2));

    const memoryMib = options.memoryMib ?? 320;
    for (const [index, vm] of this.vms.entries()) {
      const vmDir = join(this.stateDir, vm.name);
      const jobDir = join(vmDir, 'job');
      mkdirSync(jobDir, { recursive: true });
      const tap = `${ns}t${index + 1}`;
      await execa('ip', ['-n', ns, 'tuntap', 'add', tap, 'mode', 'tap']);
      await execa('ip', ['-n', ns, 'link', 'set', tap, 'master', bridge, 'up']);
      const mac = `52:54:00:77:00:${(index + 1).toString(16).padStart(2, '0')}`;
      const append = [
        'console=ttyS0',
        'quiet',
        'panic=-1',
        'rdinit=/init',
        `vmlab.name=${vm.name}`,
        `vmlab.ip=${vm.address}/24`,
        `vmlab.checkout=${this.checkoutDir}`,
        `vmlab.kver=${kernel.version}`,
      ].join(' ');
      const share = (path: string, tag: string, readonly: boolean): string[] => [
        '-virtfs',
        `local,path=${path},mount_tag=${tag},security_model=none,multidevs=remap${readonly ? ',readonly=on' : ''}`,
      ];
      // Run inside the lab namespace so qemu opens the tap created there.
      await execa('ip', [
        'netns',
        'exec',
        ns,
        'qemu-system-x86_64',
        '-name',
        `${ns}-${vm.name}`,
        '-nodefaults',
        '-no-user-config',
        // The default 1 GiB TCG code cache pushes a VM past 500 MiB of host memory.
        '-accel',
        'tcg,tb-size=64',
        '-m',
        String(memoryMib),
        '-smp',
        '1',
        '-kernel',
        kernel.vmlinuxPath,
        '-initrd',
        initrd,
        '-append',
        append,
        ...share('/', 'hostroot', true),
        ...share(kernel.modulesDir, 'modules', true),
        ...share(this.checkoutDir, 'checkout', false),
        ...share(jobDir, 'job', false),
        '-netdev',
        `tap,id=n0,ifname=${tap},script=no,downscript=no`,
        '-device',
        `virtio-net-pci,netdev=n0,mac=${mac}`,
        '-display',
        'none',
        '-serial',
        `file:${join(vmDir, 'console.log')}`,
        '-no-reboot',
        '-pidfile',
        join(vmDir, 'qemu.pid'),
        '-daemonize',
      ]);
    }
    await this.waitReady(options.bootTimeoutMs ?? 120_000);
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const vm of this.vms) {
      const readyFile = join(this.stateDir, vm.name, 'job', 'ready');
      while (!existsSync(readyFile)) {
        if (Date.now() > deadline || this.qemuPid(vm) === undefined) {
          throw new MeshError(
            'VMLAB_BOOT',
            `vmlab: ${vm.name} did not come up within ${timeoutMs} ms; console tail:\n${this.consoleTail(vm)}`,
          );
        }
        await sleep(POLL_MS * 2);
      }
    }
  }

  consoleTail(vm: LabVm, lines = 20): string {
    const path = join(this.stateDir, vm.name, 'console.log');
    if (!existsSync(path)) return '(no console log)';
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  }

  vm(name: string): LabVm {
    const vm = this.vms.find((v) => v.name === name);
    if (vm === undefined) {
      const known = this.vms.map((v) => v.name).join(', ') || 'none: the lab is down';
      throw new ValidationError('vm', `vmlab: no VM "${name}" in lab ${this.name} (have: ${known})`);
    }
    return vm;
  }

  /**
   * Runs a bash script in a guest (cwd: the checkout) and returns its output
   * and exit code. Jobs run concurrently in the guest, so a server started by
   * one exec keeps running while another exec talks to it.
   */
  async exec(vmName: string, script: string, options: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const vm = this.vm(vmName);
    const jobDir = join(this.stateDir, vm.name, 'job');
    const id = `${process.pid}-${++this.jobCounter}`;
    const base = join(jobDir, id);
    writeFileSync(`${base}.tmp`, `set -o pipefail\n${script}\n`);
    renameSync(`${base}.tmp`, `${base}.sh`);
    const timeoutMs = options.timeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(`${base}.rc`)) {
      if (Date.now() > deadline) {
        throw new MeshError(
          'VMLAB_EXEC_TIMEOUT',
          `vmlab: job on ${vm.name} did not finish within ${timeoutMs} ms: ${script.slice(0, 200)}`,
        );
      }
      if (this.qemuPid(vm) === undefined) {
        throw new MeshError(
          'VMLAB_VM_GONE',
          `vmlab: ${vm.name} is not running; console tail:\n${this.consoleTail(vm)}`,
        );
      }
      await sleep(POLL_MS);
    }
    const result: ExecResult = {
      stdout: readFileSync(`${base}.out`, 'utf8'),
      stderr: readFileSync(`${base}.err`, 'utf8'),
      exitCode: Number.parseInt(readFileSync(`${base}.rc`, 'utf8').trim(), 10),
    };
    for (const ext of ['run', 'out', 'err', 'rc']) rmSync(`${base}.${ext}`, { force: true });
    return result;
  }

  /** Like exec, but a non-zero exit code is an error that carries stderr. */
  async run(vmName: string, script: string, options: { timeoutMs?: number } = {}): Promise<string> {
    const result = await this.exec(vmName, script, options);
    if (result.exitCode !== 0) {
      throw new MeshError(
        'VMLAB_EXEC_FAILED',
        `vmlab: on ${vmName}, exit ${result.exitCode}: ${script.slice(0, 200)}\nstderr: ${result.stderr.slice(0, 2000)}`,
      );
    }
    return result.stdout;
  }

  /** The pid of this VM's qemu if it is alive and really is that qemu (pids get reused). */
  private qemuPid(vm: LabVm): number | undefined {
    const pidFile = join(this.stateDir, vm.name, 'qemu.pid');
    if (!existsSync(pidFile)) return undefined;
    const pid = Number.parseInt(readFileSync(pidFile, 'utf8').trim(), 10);
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return cmdline.includes(`${this.name}-${vm.name}`) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Powers guests off (sysrq), kills any qemu still alive by its pidfile,
   * deletes the lab namespace and the state dir. Safe to call any number of
   * times, and on a lab whose previous run was killed.
   */
  async down(): Promise<void> {
    const vms = existsSync(this.stateDir)
      ? readdirSync(this.stateDir)
          .filter((d) => /^vm[0-9]+$/.test(d))
          .map((d) => ({ name: d, address: '' }))
      : [];
    const alive = vms.filter((vm) => this.qemuPid(vm) !== undefined);
    for (const vm of alive) {
      const jobDir = join(this.stateDir, vm.name, 'job');
      writeFileSync(join(jobDir, 'poweroff.tmp'), 'echo o > /proc/sysrq-trigger\n');
      renameSync(join(jobDir, 'poweroff.tmp'), join(jobDir, 'poweroff.sh'));
    }
    const deadline = Date.now() + 3_000;
    while (alive.some((vm) => this.qemuPid(vm) !== undefined) && Date.now() < deadline) await sleep(POLL_MS);
    for (const vm of alive) {
      const pid = this.qemuPid(vm);
      if (pid === undefined) continue;
      process.kill(pid, 'SIGKILL');
      while (this.qemuPid(vm) !== undefined) await sleep(POLL_MS);
    }
    const netns = await execa('ip', ['netns', 'list'], { reject: false });
    if (netns.stdout.split('\n').some((line) => line.split(' ')[0] === this.name)) {
      await execa('ip', ['netns', 'delete', this.name]);
    }
    rmSync(this.stateDir, { recursive: true, force: true });
  }
}
