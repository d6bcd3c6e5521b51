import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type DaemonConfig, resolveConfig } from '../../../src/meshd/config.js';
import { initNode, joinNode, type RunningDaemon, runNode } from '../../../src/meshd/daemon.js';
import { meshctl } from '../../lib/meshctl.js';

describe('meshd init + run (one manager on loopback) driven by meshctl', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-daemon-'));
  let cfg: DaemonConfig;
  let daemon: RunningDaemon | undefined;

  before(async () => {
    cfg = resolveConfig({
      hostname: 'm1',
      flags: {
        'state-dir': join(dir, 'state'),
        socket: join(dir, 'meshd.sock'),
        'listen-address': '127.0.0.1:0',
        'raft-listen-address': '127.0.0.1:0',
        'socket-group': 'meshd-test-none',
        'data-plane': 'none',
      },
    });
    await initNode(cfg);
    daemon = await runNode(cfg);
  });
  after(async () => {
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('init refuses a state dir that already holds a node and says what to do', async () => {
    await assert.rejects(initNode(cfg), /already holds a node: start it with "meshd run"/);
  });

  it('the socket is mode 0660 and serves the founder node and the ingress network', async () => {
    assert.equal(statSync(cfg.socketPath).mode & 0o777, 0o660);
    const nodes = await meshctl(cfg.socketPath, '--format', 'json', 'node', 'ls');
    assert.equal(nodes.code, 0, nodes.err);
    const parsed = JSON.parse(nodes.out) as { hostname: string; role: string }[];
    assert.deepEqual(
      parsed.map((n) => [n.hostname, n.role]),
      [['m1', 'NODE_ROLE_MANAGER']],
    );
    const nets = await meshctl(cfg.socketPath, 'network', 'ls');
    assert.match(nets.out, /ingress\s+overlay\s+10\.255\.0\.0\/16/);
  });

  it('service create waits until its tasks run (real agent, host-namespace processes) and says so', async () => {
    const r = await meshctl(
      cfg.socketPath,
      'service',
      'create',
      '--name',
      'web',
      '--replicas',
      '2',
      '-p',
      '8080:80',
      '--',
      '/bin/sleep',
      '600',
    );
    assert.equal(r.code, 0, r.err);
    const lines = r.out.split('\n');
    assert.match(lines.at(-2) ?? '', /^web: 2\/2 tasks running$/);
    assert.equal(lines.at(-1), 'web: converged');
    const ps = (await meshctl(cfg.socketPath, 'service', 'ps', 'web')).out;
    assert.equal((ps.match(/web\.\d+\s+m1\s+running\s+running/g) ?? []).length, 2, ps);
  });

  it('a bad spec and an unknown node each come back as one line', async () => {
    const dup = await meshctl(
      cfg.socketPath,
      'service',
      'create',
      '-d',
      '--name',
      'web',
      '--',
      '/usr/bin/true',
    );
    assert.equal(dup.code, 1);
    assert.equal(dup.err.split('\n').length, 1);
    assert.match(dup.err, /web/);
    const node = await meshctl(cfg.socketPath, 'node', 'update', '--availability', 'drain', 'nosuch');
    assert.equal(node.code, 1);
    assert.match(node.err, /^meshctl: .*nosuch.*meshctl node ls/);
  });

  it('join with a wrong token is refused before anything is written', async () => {
    const other = { ...cfg, stateDir: join(dir, 'worker') };
    const wrong =
      'MESHTKN-1-0000000000000000000000000000000000000000000000000000000000000000-abcdefghijklmnopqrstuvwxy';
    await assert.rejects(joinNode(other, `127.0.0.1:${daemon?.listenPort}`, wrong), (err: unknown) => {
      assert.doesNotMatch((err as Error).message, /\n/);
      return true;
    });
    assert.equal(existsSync(join(other.stateDir, 'node.json')), false);
  });

  it('join with the worker token gets a worker identity from the CA', async () => {
    const token = (await meshctl(cfg.socketPath, 'join-token', '-q', 'worker')).out;
    const other = { ...cfg, stateDir: join(dir, 'worker2'), socketPath: join(dir, 'w1.sock') };
    const node = await joinNode(other, `127.0.0.1:${daemon?.listenPort}`, token);
    assert.equal(node.role, 'worker');
    const worker = await runNode({ ...other, hostname: 'w1' });
    try {
      const deadline = Date.now() + 15_000;
      let ls = '';
      while (Date.now() < deadline) {
        ls = (await meshctl(cfg.socketPath, 'node', 'ls')).out;
        if (/w1\s+ready\s+active\s+worker/.test(ls)) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.match(ls, /w1\s+ready\s+active\s+worker/);
      // The worker's own socket serves diag (and only diag): its session, the manager it reaches.
      const diag = await meshctl(other.socketPath, '--format', 'json', 'diag');
      assert.equal(diag.code, 0, `${diag.out}\n${diag.err}`);
      const report = JSON.parse(diag.out) as {
        ok: boolean;
        checks: { check: string; status: string }[];
        facts: { node: { role: string; hostname: string }; session: { connected: boolean } };
      };
      assert.equal(report.ok, true);
      assert.deepEqual(report.facts.node.role, 'worker');
      assert.equal(report.facts.session.connected, true);
      assert.ok(report.checks.some((c) => c.check.startsWith('manager 127.0.0.1:') && c.status === 'ok'));
      const onManager = await meshctl(cfg.socketPath, 'diag');
      assert.equal(onManager.code, 0, onManager.err);
      assert.match(onManager.out, /OK\s+raft\s+leader \S+ \(this node\)/);
      const scaled = await meshctl(
        cfg.socketPath,
        'service',
        'create',
        '--name',
        'spread',
        '--replicas',
        '4',
        '--',
        '/bin/sleep',
        '600',
      );
      assert.equal(scaled.code, 0, scaled.err);
      const ps = (await meshctl(cfg.socketPath, 'service', 'ps', 'spread')).out;
      assert.match(ps, /spread\.\d+\s+w1\s+running/);
      assert.match(ps, /spread\.\d+\s+m1\s+running/);
    } finally {
      // Without this, w1 going down reschedules its tasks onto the next node to join
      // (m2 below), whose stop would then wait for their drain.
      await meshctl(cfg.socketPath, 'service', 'rm', 'spread');
      await worker.stop();
    }
  });

  it('join tokens survive a restart of the manager (they live in the replicated store)', async () => {
    const before = await meshctl(cfg.socketPath, 'join-token', '-q', 'worker');
    assert.equal(before.code, 0, before.err);
    await daemon?.stop();
    daemon = await runNode(cfg);
    const after = await meshctl(cfg.socketPath, 'join-token', '-q', 'worker');
    assert.equal(after.code, 0, after.err);
    assert.equal(after.out, before.out);
  });

  it('join with the manager token makes a Raft voter whose socket serves the same cluster', async () => {
    const token = (await meshctl(cfg.socketPath, 'join-token', '-q', 'manager')).out;
    const other = {
      ...cfg,
      stateDir: join(dir, 'manager2'),
      socketPath: join(dir, 'm2.sock'),
      hostname: 'm2',
    };
    const node = await joinNode(other, `127.0.0.1:${daemon?.listenPort}`, token);
    assert.equal(node.role, 'manager');
    const m2 = await runNode(other);
    try {
      assert.equal(Object.keys(daemon?.manager?.members() ?? {}).length, 2);
      const ls = await meshctl(other.socketPath, 'service', 'ls');
      assert.equal(ls.code, 0, ls.err);
      assert.match(ls.out, /\bweb\b/);
    } finally {
      // Demoted first: a stopped voter of two would leave m1 without a quorum,
      // and m1's own stop (its tasks' drain needs the managers) would wait that out.
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
        // The demotion is refused while it would leave too few ready managers.
        const ls = (await meshctl(cfg.socketPath, 'node', 'ls')).out;
        if (/\bm1\s+ready\b/.test(ls) && /\bm2\s+ready\b/.test(ls)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const demoted = await meshctl(cfg.socketPath, 'node', 'demote', node.nodeId);
      assert.equal(demoted.code, 0, demoted.err);
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
        if (Object.keys(daemon?.manager?.members() ?? {}).length === 1) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await m2.stop();
    }
  });
});
