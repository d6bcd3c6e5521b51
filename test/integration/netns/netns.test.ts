import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { NetnsHelper, openSocketsInNetns } from '../../../dataplane/netns/helper.js';
import {
  createNetns,
  deleteNetns,
  ensureNetns,
  execInNetns,
  listNetns,
  netnsExists,
} from '../../../dataplane/netns/netns.js';
import { NetnsHelperPool } from '../../../dataplane/netns/pool.js';

const NS = 'mdkns1';
const NS2 = 'mdkns2';

const execFileAsync = promisify(execFile);

// Asynchronous on purpose: the parent must keep serving the handed-over sockets meanwhile.
async function inNs(ns: string, cmd: string, args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: 10_000 });
  return stdout;
}

describe('netns lifecycle', () => {
  after(async () => {
    await deleteNetns(NS2);
  });

  test('create deletes a leftover of the same name and brings loopback up', async () => {
    await createNetns(NS2);
    execFileSync('ip', ['-n', NS2, 'link', 'add', 'mdkleft0', 'type', 'bridge']);
    await createNetns(NS2);
    assert.ok(netnsExists(NS2));
    const links = JSON.parse(execFileSync('ip', ['-n', NS2, '-j', 'link', 'show']).toString()) as {
      ifname: string;
      flags: string[];
    }[];
    assert.deepEqual(
      links.map((l) => l.ifname),
      ['lo'],
    );
    assert.ok(links[0]?.flags.includes('UP'));
  });

  test('ensure keeps an existing namespace and delete is idempotent', async () => {
    assert.equal(await ensureNetns(NS2), false);
    mkdirSync(`/etc/netns/${NS2}`, { recursive: true });
    writeFileSync(`/etc/netns/${NS2}/resolv.conf`, 'nameserver 127.0.0.11\n');
    assert.ok(listNetns('mdkns').includes(NS2));
    assert.equal(await deleteNetns(NS2), true);
    assert.equal(await deleteNetns(NS2), false);
    assert.equal(netnsExists(NS2), false);
    assert.equal(existsSync(`/etc/netns/${NS2}`), false, 'per-namespace /etc/netns dir removed');
  });

  test('a bad namespace name is rejected with the field and the accepted form', async () => {
    await assert.rejects(createNetns('Bad Name'), /netns: namespace name must match/);
  });

  test('a namespace created from inside `ip netns exec` is usable from outside, and deleted from there too', async () => {
    await createNetns(NS2);
    const mod = JSON.stringify(new URL('../../../dataplane/netns/netns.ts', import.meta.url).href);
    const run = (body: string) =>
      inNs(NS2, process.execPath, [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import * as n from ${mod}; ${body}`,
      ]);
    await run(`await n.createNetns('mdkns3'); console.log('created');`);
    try {
      // From this process (another mount namespace): the namespace must be a live one, not an empty file.
      const out = await inNs('mdkns3', 'ip', ['-j', 'link', 'show', 'lo']);
      assert.match(out, /"UP"/);
      await run(`await n.deleteNetns('mdkns3');`);
      assert.equal(netnsExists('mdkns3'), false);
    } finally {
      await deleteNetns('mdkns3');
    }
  });

  test('exec in a namespace reports stderr of a failing command', async () => {
    await createNetns(NS2);
    await assert.rejects(execInNetns(NS2, ['ip', 'link', 'show', 'nosuchdev0']), /nosuchdev0/);
  });
});

describe('namespace helper and socket handoff', () => {
  let helper: NetnsHelper;

  before(async () => {
    await createNetns(NS);
    helper = await NetnsHelper.start(NS);
  });

  after(async () => {
    await helper?.stop();
    await deleteNetns(NS);
  });

  test('the helper runs inside the namespace', async () => {
    const r = await helper.exec(['ip', '-j', 'link', 'show']);
    assert.equal(r.code, 0);
    const names = (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname);
    assert.deepEqual(names, ['lo']);
  });

  test('a UDP socket bound inside the namespace is served by the parent', async () => {
    const { socket, bound } = await helper.openUdpSocket('127.0.0.11', 53);
    assert.equal(bound.port, 53);
    try {
      socket.on('message', (msg, rinfo) => {
        socket.send(Buffer.concat([Buffer.from('echo:'), msg]), rinfo.port, rinfo.address);
      });
      // The client runs inside the namespace: 127.0.0.11 there is not the root namespace's.
      const out = await inNs(NS, process.execPath, [
        '-e',
        `const s=require('dgram').createSocket('udp4');s.on('message',m=>{process.stdout.write(m);s.close()});` +
          `s.send('hi',53,'127.0.0.11');setTimeout(()=>process.exit(3),3000).unref()`,
      ]);
      assert.equal(out, 'echo:hi');
    } finally {
      socket.close();
    }
  });

  test('a TCP server listening inside the namespace is served by the parent', async () => {
    const { server, bound } = await helper.openTcpServer('127.0.0.1', 0);
    assert.ok(bound.port > 0);
    try {
      server.on('connection', (c: net.Socket) => {
        c.end(`served-by-${process.pid}`);
      });
      const out = await inNs(NS, process.execPath, [
        '-e',
        `const c=require('net').connect(${bound.port},'127.0.0.1');let d='';` +
          `c.on('data',x=>d+=x);c.on('end',()=>process.stdout.write(d))`,
      ]);
      assert.equal(out, `served-by-${process.pid}`);
    } finally {
      server.close();
    }
  });

  test('a namespace has its own stack: the port bound inside is still free in the root namespace', async () => {
    const { socket, bound } = await helper.openUdpSocket('127.0.0.11', 0);
    const rootSock = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        rootSock.once('error', reject);
        rootSock.bind(bound.port, '127.0.0.11', () => resolve());
      });
    } finally {
      rootSock.close();
      socket.close();
    }
  });

  test('sysctl writes land in the namespace', async () => {
    await helper.sysctl('net.ipv4.ip_forward', '1');
    assert.equal((await inNs(NS, 'cat', ['/proc/sys/net/ipv4/ip_forward'])).trim(), '1');
    await assert.rejects(helper.sysctl('kernel.hostname', 'x'), /sysctl key must match/);
  });

  test('sockets from a short-lived helper keep serving after the helper has exited', async () => {
    const [opened] = await openSocketsInNetns(NS, [{ kind: 'udp4', address: '127.0.0.11', port: 0 }]);
    assert.equal(opened?.kind, 'udp4');
    if (opened?.kind !== 'udp4') return;
    try {
      opened.socket.on('message', (msg, rinfo) => opened.socket.send(msg, rinfo.port, rinfo.address));
      const out = await inNs(NS, process.execPath, [
        '-e',
        `const s=require('dgram').createSocket('udp4');s.on('message',m=>{process.stdout.write(m);s.close()});` +
          `s.send('again',${opened.bound.port},'127.0.0.11');setTimeout(()=>process.exit(3),3000).unref()`,
      ]).catch((e: unknown) => String(e));
      assert.equal(out, 'again');
    } finally {
      opened.socket.close();
    }
  });

  test('socket requests are validated before anything starts in the namespace', async () => {
    await assert.rejects(
      openSocketsInNetns(NS, [{ kind: 'udp4', address: '127.0.0.300', port: 53 }]),
      /address must be an IPv4 address, got "127.0.0.300"/,
    );
    await assert.rejects(
      openSocketsInNetns(NS, [{ kind: 'tcp4', address: '127.0.0.11', port: 70000 }]),
      /port must be an integer 0..65535, got 70000/,
    );
    await assert.rejects(openSocketsInNetns('mdkns-missing', []), /namespace does not exist/);
  });

  test('an opener that cannot bind reports the kernel error and hands nothing over', async () => {
    // The kernel refuses a second listener on a bound port: open one, then ask for it again.
    const [first] = await openSocketsInNetns(NS, [{ kind: 'tcp4', address: '127.0.0.11', port: 0 }]);
    assert.equal(first?.kind, 'tcp4');
    if (first?.kind !== 'tcp4') return;
    try {
      await assert.rejects(
        openSocketsInNetns(NS, [{ kind: 'tcp4', address: '127.0.0.11', port: first.bound.port }]),
        /EADDRINUSE/,
      );
    } finally {
      first.server.close();
    }
  });

  test('an idle helper does not keep a one-shot command alive, and exits with it', async () => {
    const script =
      `import { NetnsHelper } from ${JSON.stringify(new URL('../../../dataplane/netns/helper.ts', import.meta.url).href)};` +
      `const h = await NetnsHelper.start(${JSON.stringify(NS)}); await h.ping(); console.log(h.pid);`;
    const { stdout } = await execFileAsync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        timeout: 15_000,
      },
    );
    const helperPid = Number(stdout.trim());
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && isAlive(helperPid)) await new Promise((r) => setTimeout(r, 50));
    assert.equal(isAlive(helperPid), false, `helper ${helperPid} outlived the command`);
  });

  test('the pool replaces a helper that died', async () => {
    const pool = new NetnsHelperPool();
    try {
      const first = await pool.get(NS);
      assert.equal(await pool.get(NS), first);
      process.kill(first.pid, 'SIGKILL');
      const deadline = Date.now() + 5_000;
      while (first.alive && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const second = await pool.get(NS);
      assert.notEqual(second.pid, first.pid);
      await second.ping();
    } finally {
      await pool.stopAll();
    }
  });

  test('a helper exits when its parent is killed', async () => {
    const script =
      `import { NetnsHelper } from ${JSON.stringify(new URL('../../../dataplane/netns/helper.ts', import.meta.url).href)};` +
      `const h = await NetnsHelper.start(${JSON.stringify(NS)}); console.log(h.pid); setInterval(() => {}, 1000);`;
    const parent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const helperPid = await new Promise<number>((resolve, reject) => {
      parent.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      parent.once('exit', (code) => reject(new Error(`parent exited early with ${code}`)));
    });
    assert.ok(helperPid > 0);
    parent.kill('SIGKILL');
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline && isAlive(helperPid)) await new Promise((r) => setTimeout(r, 50));
    assert.equal(isAlive(helperPid), false, `helper ${helperPid} outlived its parent`);
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
