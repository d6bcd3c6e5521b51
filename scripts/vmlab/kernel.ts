import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { MeshError } from '../../src/common/errors.js';

/** A Debian kernel unpacked for the lab: what qemu boots and what guests modprobe from. */
export interface LabKernel {
  /** e.g. "6.1.0-56-amd64" */
  version: string;
  /** Uncompressed ELF kernel (boots about 2 s faster under TCG than bzImage). */
  vmlinuxPath: string;
  /** The directory that is /lib/modules/<version> in the guest (depmod already run). */
  modulesDir: string;
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/**
 * The kernel package `linux-image-amd64` points at today. The number moves with
 * every Debian point release, so it is resolved, never written down.
 */
export async function resolveKernelPackage(): Promise<string> {
  const depends = () => execa('apt-cache', ['depends', 'linux-image-amd64'], { reject: false });
  const pattern = /Depends:\s+(linux-image-[0-9][^\s]*-amd64)\b/;
  let out = await depends();
  // A fresh machine (CI) may have empty package lists: refresh them once.
  if (!pattern.test(out.stdout) && process.getuid?.() === 0) {
    await execa('apt-get', ['update', '-qq'], { reject: false });
    out = await depends();
  }
  const match = pattern.exec(out.stdout);
  if (out.exitCode !== 0 || match?.[1] === undefined) {
    throw new MeshError(
      'VMLAB_KERNEL',
      `vmlab: could not resolve the kernel package from "apt-cache depends linux-image-amd64" ` +
        `(exit ${out.exitCode}); run "apt-get update" as root. Output: ${out.stdout.slice(0, 200)}${out.stderr.slice(0, 200)}`,
    );
  }
  return match[1];
}

/**
 * Downloads (once) and unpacks the kernel into `cacheDir`, runs depmod and
 * cuts the uncompressed ELF out of vmlinuz. A finished kernel is marked by a
 * `ready` file, so a run killed half-way redoes the work instead of booting
 * a half-unpacked tree.
 */
export async function ensureKernel(cacheDir: string): Promise<LabKernel> {
  const pkg = await resolveKernelPackage();
  const version = pkg.replace(/^linux-image-/, '');
  const dir = join(cacheDir, `kernel-${version}`);
  const kernel: LabKernel = {
    version,
    vmlinuxPath: join(dir, 'vmlinux'),
    modulesDir: join(dir, 'root', 'lib', 'modules', version),
  };
  if (existsSync(join(dir, 'ready'))) return kernel;

  rmSync(dir, { recursive: true, force: true });
  const download = join(dir, 'download');
  mkdirSync(download, { recursive: true });
  await execa('apt-get', ['download', pkg], { cwd: download });
  const deb = readdirSync(download).find((f) => f.endsWith('.deb'));
  if (deb === undefined) throw new MeshError('VMLAB_KERNEL', `vmlab: apt-get download ${pkg} left no .deb`);
  const root = join(dir, 'root');
  await execa('dpkg', ['-x', join(download, deb), root]);
  await execa('depmod', ['-b', root, version]);
  writeFileSync(kernel.vmlinuxPath, await extractVmlinux(join(root, 'boot', `vmlinuz-${version}`)));
  rmSync(download, { recursive: true, force: true });
  writeFileSync(join(dir, 'ready.tmp'), `${pkg}\n`);
  renameSync(join(dir, 'ready.tmp'), join(dir, 'ready'));
  return kernel;
}

/** The ELF inside a bzImage: the xz stream that starts at the first xz magic. */
export async function extractVmlinux(vmlinuzPath: string): Promise<Buffer> {
  const image = readFileSync(vmlinuzPath);
  const start = image.indexOf(XZ_MAGIC);
  if (start < 0) {
    throw new MeshError('VMLAB_KERNEL', `vmlab: no xz stream (magic FD 37 7A 58 5A 00) in ${vmlinuzPath}`);
  }
  const out = await execa('xz', ['-dc', '--single-stream'], {
    input: image.subarray(start),
    encoding: 'buffer',
    reject: false,
  });
  const elf = Buffer.from(out.stdout);
  if (elf.subarray(0, 4).toString('latin1') !== '\x7fELF') {
    throw new MeshError('VMLAB_KERNEL', `vmlab: the xz stream in ${vmlinuzPath} is not an ELF kernel`);
  }
  return elf;
}

/**
 * Module files (relative to the modules dir) needed to load `names`, each after
 * its dependencies, read from modules.dep (which lists a module's
 * dependencies, the one to load first last).
 */
export function moduleLoadOrder(modulesDep: string, names: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon);
    deps.set(
      file,
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    );
    const base = file.slice(file.lastIndexOf('/') + 1).replace(/\.ko(\.[a-z]+)?$/, '');
    byName.set(base.replace(/-/g, '_'), file);
  }
  const order: string[] = [];
  const visit = (file: string): void => {
    if (order.includes(file)) return;
    for (const dep of [...(deps.get(file) ?? [])].reverse()) visit(dep);
    order.push(file);
  };
  for (const name of names) {
    const file = byName.get(name.replace(/-/g, '_'));
    if (file === undefined) {
      throw new MeshError('VMLAB_KERNEL', `vmlab: module "${name}" is not in modules.dep (built in?)`);
    }
    visit(file);
  }
  return order;
}
