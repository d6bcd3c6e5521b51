/**
 * `meshd init --external-ca https://...`: a real `cfssl serve` on loopback,
 * behind HTTPS with a private CA, signs every node certificate; the root key
 * never enters the cluster. The setting lives in the replicated CA state, so
 * the running manager (not only init) relays joins to the signer.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createRootCA } from '../../../controlplane/ca/authority.js';
import type { DaemonConfig } from '../../../src/meshd/config.js';
import { initNode, joinNode, type RunningDaemon, runNode } from '../../../src/meshd/daemon.js';
import { externalCaFromFlags } from '../../../src/meshd/external-ca.js';
import { freePort, loopbackNodeConfig } from '../../lib/loopback-node.js';
import { meshctl } from '../../lib/meshctl.js';

const openssl = (...args: string[]) => execFileSync('openssl', args, { encoding: 'utf8', stdio: 'pipe' });

describe('meshd init --external-ca (real cfssl serve over HTTPS with a private CA)', {
  timeout: 120_000,
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshd-extca-'));
  const file = (name: string) => join(dir, name);
  let cfssl: ChildProcess | undefined;
  let url = '';
  const daemons: RunningDaemon[] = [];
  const config = (name: string): DaemonConfig => loopbackNodeConfig(dir, name);

  before(async () => {
    // The root the signer signs node certificates with; its O is the cluster ID.
    const root = await createRootCA({ clusterId: 'extcluster', nowMs: Date.now() });
    writeFileSync(file('root.crt'), root.certPem);
    writeFileSync(file('root.key'), root.privateKeyPem, { mode: 0o600 });
    // A private CA for the signer's HTTPS certificate (127.0.0.1).
    openssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=test tls ca',
      '-keyout',
      file('tls-ca.key'),
      '-out',
      file('tls-ca.crt'),
    );
    openssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      file('tls.key'),
      '-out',
      file('tls.csr'),
    );
    writeFileSync(file('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    openssl(
      'x509',
      '-req',
      '-in',
      file('tls.csr'),
      '-CA',
      file('tls-ca.crt'),
      '-CAkey',
      file('tls-ca.key'),
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      file('san.ext'),
      '-out',
      file('tls.crt'),
    );
    const usages = ['digital signature', 'key agreement', 'server auth', 'client auth'];
    writeFileSync(file('config.json'), JSON.stringify({ signing: { default: { expiry: '24h', usages } } }));
    const port = await freePort();
    url = `https://127.0.0.1:${port}`;
    let stderr = '';
    cfssl = spawn(
      'cfssl',
      [
        'serve',
        '-address',
        '127.0.0.1',
        '-port',
        String(port),
        '-ca',
        file('root.crt'),
        '-ca-key',
        file('root.key'),
        '-config',
        file('config.json'),
        '-tls-cert',
        file('tls.crt'),
        '-tls-key',
        file('tls.key'),
        '-loglevel',
        '4',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    cfssl.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    for (const deadline = Date.now() + 15_000; ; ) {
      const up = await new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(true));
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
      });
      if (up) break;
      if (Date.now() > deadline || cfssl.exitCode !== null)
        throw new Error(`cfssl serve did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    for (const d of daemons.reverse()) await d.stop().catch(() => undefined);
    cfssl?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('bad flags are refused naming the flag', () => {
    const cases: [Parameters<typeof externalCaFromFlags>[0], RegExp][] = [
      [{ externalCa: 'ftp://x' }, /--external-ca must be http or https/],
      [{ externalCa: 'not a url' }, /--external-ca must be an http\(s\) URL/],
      [{ externalCa: 'https://127.0.0.1:1' }, /needs --external-ca-root FILE/],
      [{ externalCaRoot: file('root.crt') }, /--external-ca-root goes with --external-ca URL/],
      [
        {
          externalCa: 'http://127.0.0.1:1',
          externalCaRoot: file('root.crt'),
          externalCaTlsCa: file('tls-ca.crt'),
        },
        /--external-ca-tls-ca is for an https/,
      ],
      [
        { externalCa: 'https://127.0.0.1:1', externalCaRoot: file('missing.crt') },
        /--external-ca-root .*missing\.crt/,
      ],
    ];
    for (const [flags, message] of cases) assert.throws(() => externalCaFromFlags(flags), message);
  });

  it('a signer whose HTTPS certificate is not trusted fails init, which keeps nothing', async () => {
    const cfg = config('untrusted');
    const external = externalCaFromFlags({ externalCa: url, externalCaRoot: file('root.crt') });
    await assert.rejects(initNode(cfg, external), /external CA https:\/\/127\.0\.0\.1:\d+.* did not answer/);
    assert.equal(existsSync(join(cfg.stateDir, 'node.json')), false);
  });

  it('init, run and a join: every certificate comes from the signer, and root rotation is refused', async () => {
    const m1 = config('m1');
    const external = externalCaFromFlags({
      externalCa: url,
      externalCaRoot: file('root.crt'),
      externalCaTlsCa: file('tls-ca.crt'),
    });
    const founder = await initNode(m1, external);
    assert.equal(founder.clusterId, 'extcluster');
    assert.equal(existsSync(join(m1.stateDir, 'ca', 'root.key')), false, 'no root key on the manager');
    daemons.push(await runNode(m1));
    const token = (await meshctl(m1.socketPath, 'join-token', '-q', 'worker')).out;
    const w1 = config('w1');
    // The running manager signs through the setting in the replicated store.
    await joinNode(w1, `127.0.0.1:${daemons[0]!.listenPort}`, token);
    for (const name of ['m1', 'w1']) {
      const out = openssl('verify', '-CAfile', file('root.crt'), join(dir, name, 'tls', 'node.crt'));
      assert.match(out, /: OK$/m);
      assert.match(
        openssl('x509', '-noout', '-subject', '-in', join(dir, name, 'tls', 'node.crt')),
        /O ?= ?extcluster/,
      );
    }
    const rotate = await meshctl(m1.socketPath, 'ca', '--rotate', '--detach');
    assert.equal(rotate.code, 1);
    assert.match(rotate.err, /root rotation needs the current root key here \(not in external CA mode\)/);
  });
});
