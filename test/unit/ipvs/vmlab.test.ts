import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { moduleLoadOrder } from '../../../scripts/vmlab/kernel.js';
import { labName, VmLab } from '../../../scripts/vmlab/lab.js';
import { ValidationError } from '../../../src/common/errors.js';

// The VM lab itself boots in the vm tier; these are its decisions that need no VM.
const MODULES_DEP = [
  'kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko',
  'kernel/net/9p/9pnet.ko:',
  'kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko',
  'kernel/fs/netfs/netfs.ko: kernel/fs/fscache/fscache.ko',
  'kernel/fs/fscache/fscache.ko:',
  'kernel/drivers/virtio/virtio.ko:',
  'kernel/drivers/virtio/virtio_ring.ko:',
  'kernel/fs/overlayfs/overlay.ko:',
].join('\n');

describe('vmlab', () => {
  it('initramfs modules load after their dependencies (modules.dep lists the one to load first last), each once', () => {
    const order = moduleLoadOrder(MODULES_DEP, ['9pnet_virtio', '9p', 'overlay']);
    const at = (name: string) => order.findIndex((f) => f.endsWith(`/${name}.ko`));
    assert.equal(new Set(order).size, order.length);
    assert.ok(at('virtio') < at('virtio_ring') && at('virtio_ring') < at('9pnet_virtio'));
    assert.ok(at('9pnet') < at('9pnet_virtio'));
    assert.ok(at('fscache') < at('netfs') && at('netfs') < at('9p'));
    assert.equal(order.at(-1), 'kernel/fs/overlayfs/overlay.ko');
  });

  it('a module missing from modules.dep is an error that names it', () => {
    assert.throws(() => moduleLoadOrder(MODULES_DEP, ['virtio_net']), /"virtio_net" is not in modules.dep/);
  });

  it('a lab name that would not fit link names, or a VM count outside 1..5, is refused before anything is created', async () => {
    await assert.rejects(
      VmLab.up(1, { name: 'mdvtoolongname' }),
      (err: unknown) => err instanceof ValidationError,
    );
    await assert.rejects(VmLab.up(1, { name: 'lab1' }), (err: unknown) => err instanceof ValidationError);
    await assert.rejects(
      VmLab.up(6, { name: 'mdvx' }),
      (err: unknown) => err instanceof ValidationError && /1\.\.5, got 6/.test(err.message),
    );
  });

  it('exec on a VM the lab does not have names the VMs it has', () => {
    const lab = VmLab.attach({ name: 'mdvnone' });
    assert.throws(() => lab.vm('vm9'), /no VM "vm9" in lab mdvnone \(have: none: the lab is down\)/);
  });

  it('MESHD_VMLAB_TAG ends a fixed lab name (unset: unchanged), so two checkouts never share a lab; a bad tag is refused', () => {
    assert.equal(labName('mdvi1', ''), 'mdvi1');
    assert.equal(labName('mdvi1', '4'), 'mdvi14');
    assert.equal(labName('mdvcodec', '4'), 'mdvcodec4');
    assert.throws(() => labName('mdvi1', 'X-'), /MESHD_VMLAB_TAG must be 0..2 of \[a-z0-9\]/);
    assert.throws(
      () => labName('mdvcodecxy', '4'),
      (err: unknown) => err instanceof ValidationError,
    );
  });
});
