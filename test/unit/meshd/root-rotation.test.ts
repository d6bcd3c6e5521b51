/**
 * `meshctl ca --rotate` on a running cluster (3 managers and a worker on
 * loopback): every node renews from the new root in batches, the leader
 * retires the old root, tokens pin the new one, and a manager restarted
 * afterwards is reached again by the others over Raft (their client
 * channels carry the renewed certificates, not the retired ones).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DaemonConfig } from '../../../src/meshd/config.js';
import { initNode, joinNode, type RunningDaemon, runNode } from '../../../src/meshd/daemon.js';
import { loopbackNodeConfig } from '../../lib/loopback-node.js';
import { meshctl } from '../../lib/meshctl.js';

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('root CA rotation on a running cluster', { timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-rotate-'));
  const daemons = new Map<string, RunningDaemon>();
  const configs = new Map<string, DaemonConfig>();
  const config = (name: string): DaemonConfig => {
    const cfg = loopbackNodeConfig(dir, name);
    configs.set(name, cfg);
    return cfg;
  };
  const socket = (name: string) => configs.get(name)!.socketPath;
  const allReady = async () => {
    const ls = (await meshctl(socket('m1'), 'node', 'ls')).out;
    return ['m1', 'm2', 'm3', 'w1'].every((n) => new RegExp(`\\b${n}\\s+ready\\b`).test(ls));
  };
  let oldWorkerToken = '';

  before(async () => {
    const m1 = config('m1');
    await initNode(m1);
    daemons.set('m1', await runNode(m1));
    const target = `127.0.0.1:${daemons.get('m1')!.listenPort}`;
    const managerToken = (await meshctl(m1.socketPath, 'join-token', '-q', 'manager')).out;
    oldWorkerToken = (await meshctl(m1.socketPath, 'join-token', '-q', 'worker')).out;
    for (const name of ['m2', 'm3']) {
      const cfg = config(name);
      await joinNode(cfg, target, managerToken);
      daemons.set(name, await runNode(cfg));
    }
    const w1 = config('w1');
    await joinNode(w1, target, oldWorkerToken);
    daemons.set('w1', await runNode(w1));
    await until('4 ready nodes', allReady, 90_000);
  });
  after(async () => {
    for (const d of [...daemons.values()].reverse()) await d.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('meshctl ca --rotate through a follower moves every node to a new root, then retires the old one', async () => {
    const before = await meshctl(socket('m2'), 'ca', '-q');
    assert.equal(before.code, 0, before.err);
    const oldRoot = before.out;
    const r = await meshctl(socket('m2'), 'ca', '--rotate', '--batch-size', '1');
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    assert.match(r.out, /^Started a root rotation to sha256:[0-9a-f]{16}/m);
    assert.match(r.out, /^root rotation: \d\/4 nodes renewed \(waiting for /m);
    assert.match(r.out, /^root rotation finished: 4 nodes on the new root; the old root is retired$/m);
    const status = JSON.parse((await meshctl(socket('m3'), '--format', 'json', 'ca')).out) as {
      rotating: boolean;
      rootCertificatePem: string;
    };
    assert.equal(status.rotating, false);
    assert.notEqual(status.rootCertificatePem.trim(), oldRoot.trim());
    // Every node holds a certificate of the new root (openssl checks the chain).
    const newRoot = join(dir, 'new-root.pem');
    writeFileSync(newRoot, status.rootCertificatePem);
    for (const name of ['m1', 'm2', 'm3', 'w1']) {
      const leaf = join(dir, name, 'tls', 'node.crt');
      const out = execFileSync('openssl', ['verify', '-CAfile', newRoot, leaf], { encoding: 'utf8' });
      assert.match(out, /: OK$/m, `${name}: ${out}`);
    }
    // Each node learns of the retirement at its next status check and stops trusting the old root.
    const oldRootLine = oldRoot.split('\n')[1]!;
    for (const name of ['m1', 'm2', 'm3', 'w1'])
      await until(
        `${name} drops the old root from its trust bundle`,
        async () => !readFileSync(join(dir, name, 'tls', 'ca.crt'), 'utf8').includes(oldRootLine),
        20_000,
      );
    assert.ok(await allReady(), 'every node stayed ready');
  });

  it('tokens pin the new root: the old worker token is refused, the new one joins', async () => {
    const token = (await meshctl(socket('m1'), 'join-token', '-q', 'worker')).out;
    assert.notEqual(token, oldWorkerToken);
    const target = `127.0.0.1:${daemons.get('m1')!.listenPort}`;
    await assert.rejects(joinNode(config('w-old'), target, oldWorkerToken), /root|token/i);
    const joined = await joinNode(config('w2'), target, token);
    assert.equal(joined.role, 'worker');
    // A node that joined and never runs would hold the next rotation back.
    daemons.set('w2', await runNode(configs.get('w2')!));
  });

  it('a manager restarted after the rotation is reached again over Raft (peers renewed their client certificates)', async () => {
    // Same ports again, as a real restart would have.
    const m3 = daemons.get('m3')!;
    const ports = { tcp: m3.listenPort, raft: m3.manager!.raft.port() };
    await m3.stop();
    const again = config('m3');
    const restarted = {
      ...again,
      listenAddress: `127.0.0.1:${ports.tcp}`,
      raftListenAddress: `127.0.0.1:${ports.raft}`,
    };
    daemons.set('m3', await runNode({ ...restarted, advertiseAddress: restarted.listenAddress }));
    const created = await meshctl(socket('m1'), 'network', 'create', 'after-rotation');
    assert.equal(created.code, 0, created.err);
    // m3's socket reads linearizably: it needs the leader's appends and heartbeats.
    await until(
      'm3 sees the network created on m1',
      async () => (await meshctl(socket('m3'), 'network', 'ls')).out.includes('after-rotation'),
      30_000,
    );
    await until('4 ready nodes after the restart', allReady, 30_000);
  });

  it('a second rotation while one is in progress is refused, naming the way to see progress', async () => {
    const first = await meshctl(socket('m1'), 'ca', '--rotate', '--detach', '-q');
    assert.equal(first.code, 0, first.err);
    const second = await meshctl(socket('m2'), 'ca', '--rotate', '--detach');
    assert.equal(second.code, 1);
    assert.match(second.err, /already in progress.*"meshctl ca" shows its progress/);
    await until(
      'the second rotation to finish',
      async () =>
        !(JSON.parse((await meshctl(socket('m1'), '--format', 'json', 'ca')).out) as { rotating: boolean })
          .rotating,
      60_000,
    );
  });
});
