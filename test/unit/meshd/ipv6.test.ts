/**
 * Listeners on IPv6: the data plane is IPv4-only, so nodes advertise IPv4,
 * but managers may listen on [::] and be joined at [::1]:PORT. Every target
 * meshd builds from a host and a port must bracket an IPv6 host, or it can
 * be neither dialled nor split again.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DaemonConfig } from '../../../src/meshd/config.js';
import { initNode, joinNode, type RunningDaemon, runNode } from '../../../src/meshd/daemon.js';
import { loopbackNodeConfig } from '../../lib/loopback-node.js';
import { meshctl } from '../../lib/meshctl.js';

describe('meshd listening on [::], joined over IPv6 loopback', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-ipv6-'));
  const running: RunningDaemon[] = [];
  let cfg: DaemonConfig;

  const config = (name: string): DaemonConfig =>
    loopbackNodeConfig(dir, name, {
      'listen-address': '[::]:0',
      'raft-listen-address': '[::]:0',
      'advertise-address': '127.0.0.1:0',
    });

  before(async () => {
    cfg = config('m1');
    await initNode(cfg);
    running.push(await runNode(cfg));
  });
  after(async () => {
    for (const d of running.reverse()) await d.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a worker joins through [::1]:PORT and becomes ready', async () => {
    const token = (await meshctl(cfg.socketPath, 'join-token', '-q', 'worker')).out;
    const w1 = config('w1');
    const node = await joinNode(w1, `[::1]:${running[0]?.listenPort}`, token);
    assert.equal(node.role, 'worker');
    running.push(await runNode(w1));
    let ls = '';
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      ls = (await meshctl(cfg.socketPath, 'node', 'ls')).out;
      if (/w1\s+ready\s+active\s+worker/.test(ls)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(ls, /w1\s+ready\s+active\s+worker/);
    const diag = await meshctl(w1.socketPath, 'diag');
    assert.equal(diag.code, 0, `${diag.out}\n${diag.err}`);
    assert.match(diag.out, /manager \[::1\]:\d+/);
  });

  it('a second manager joins over IPv6 and serves the same cluster', async () => {
    const token = (await meshctl(cfg.socketPath, 'join-token', '-q', 'manager')).out;
    const m2 = config('m2');
    const node = await joinNode(m2, `[::1]:${running[0]?.listenPort}`, token);
    assert.equal(node.role, 'manager');
    running.push(await runNode(m2));
    assert.equal(Object.keys(running[0]?.manager?.members() ?? {}).length, 2);
    // m2's socket answers for the cluster; m2 itself shows up once its agent registered.
    let ls = { code: -1, out: '', err: '' };
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      ls = await meshctl(m2.socketPath, 'node', 'ls');
      if (/\bm2\s+ready\b/.test(ls.out)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(ls.code, 0, ls.err);
    assert.match(ls.out, /\bm2\s+ready\b/);
  });
});
