import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import type { LabKernel } from './kernel.js';
import { moduleLoadOrder } from './kernel.js';

/** What the initramfs needs to reach the host's root over 9p and stack an overlay on it. */
export const INITRAMFS_MODULES = ['virtio_pci', 'virtio_net', '9pnet_virtio', '9p', 'overlay'] as const;

const BUSYBOX = '/bin/busybox';

/**
 * Builds an uncompressed newc cpio (uncompressed: decompressing under TCG costs
 * more than reading a few extra MB): static busybox, our /init, and the
 * modules in load order. Returns the path of the archive.
 */
export async function buildInitramfs(kernel: LabKernel, workDir: string): Promise<string> {
  const tree = join(workDir, 'initramfs');
  rmSync(tree, { recursive: true, force: true });
  for (const d of ['bin', 'proc', 'sys', 'dev', 'modules']) mkdirSync(join(tree, d), { recursive: true });
  copyFileSync(BUSYBOX, join(tree, 'bin', 'busybox'));
  chmodSync(join(tree, 'bin', 'busybox'), 0o755);
  copyFileSync(new URL('./initramfs-init.sh', import.meta.url).pathname, join(tree, 'init'));
  chmodSync(join(tree, 'init'), 0o755);

  const order = moduleLoadOrder(
    readFileSync(join(kernel.modulesDir, 'modules.dep'), 'utf8'),
    INITRAMFS_MODULES,
  );
  for (const rel of order) copyFileSync(join(kernel.modulesDir, rel), join(tree, 'modules', basename(rel)));
  writeFileSync(join(tree, 'modules.order'), `${order.map((rel) => basename(rel)).join('\n')}\n`);

  const archive = join(workDir, 'initramfs.cpio');
  const files = await execa('find', ['.', '-mindepth', '1'], { cwd: tree });
  await execa('cpio', ['-o', '-H', 'newc', '--quiet', '-O', archive], {
    cwd: tree,
    input: `${files.stdout}\n`,
  });
  rmSync(tree, { recursive: true, force: true });
  return archive;
}
