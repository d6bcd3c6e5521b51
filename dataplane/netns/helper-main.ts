/**
 * The in-namespace helper: started by `NetnsHelper.start` as
 * `ip netns exec NS node --import tsx helper-main.ts`, so every socket it
 * opens (UDP, TCP, netlink) and every /proc/sys/net file it writes belongs to
 * that namespace. It only serves requests from its parent over IPC and exits
 * when the channel closes, so a dead daemon never leaves helpers behind.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { errorMessage, MeshError } from '../../src/common/errors.js';
import { runRtnlMethod } from '../netlink/remote.js';
import type { ExecResult, HelperReply, HelperRequest, SocketResult } from './protocol.js';

const SYSCTL_KEY_PATTERN = /^net\.[a-z0-9_.-]+$/;
const EXEC_OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024;

function send(reply: HelperReply, handle?: dgram.Socket | net.Server): Promise<void> {
  return new Promise((resolve, reject) => {
    if (process.send === undefined) {
      reject(new Error('helper started without an IPC channel'));
      return;
    }
    process.send(reply, handle, {}, (err: Error | null) => (err ? reject(err) : resolve()));
  });
}

async function openSocket(req: Extract<HelperRequest, { op: 'openSocket' }>): Promise<void> {
  if (req.kind === 'udp4') {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(req.port, req.address, () => resolve());
    });
    const a = sock.address();
    const result: SocketResult = { address: a.address, port: a.port };
    await send({ id: req.id, ok: true, result }, sock);
    // The parent holds its own duplicate of the descriptor now; ours must go or
    // both processes would compete for datagrams.
    sock.close();
    return;
  }
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: req.port, host: req.address, exclusive: true }, () => resolve());
  });
  const a = server.address() as net.AddressInfo;
  const result: SocketResult = { address: a.address, port: a.port };
  await send({ id: req.id, ok: true, result }, server);
  server.close();
}

async function writeSysctl(key: string, value: string): Promise<void> {
  if (!SYSCTL_KEY_PATTERN.test(key)) {
    throw new MeshError('INVALID_ARGUMENT', `sysctl key must match ${SYSCTL_KEY_PATTERN}, got "${key}"`);
  }
  await writeFile(`/proc/sys/${key.replaceAll('.', '/')}`, `${value}\n`);
}

function exec(argv: string[], input: string | undefined, timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) {
      reject(new MeshError('INVALID_ARGUMENT', 'exec: argv must name a command, got []'));
      return;
    }
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < EXEC_OUTPUT_LIMIT_BYTES) stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < EXEC_OUTPUT_LIMIT_BYTES) stderr += d.toString();
    });
    child.on('error', reject);
    // A command that never reads stdin may exit before we finish writing it.
    child.stdin.on('error', () => {});
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

async function handle(req: HelperRequest): Promise<void> {
  try {
    switch (req.op) {
      case 'ping':
        await send({ id: req.id, ok: true, result: { pid: process.pid } });
        return;
      case 'openSocket':
        await openSocket(req);
        return;
      case 'sysctl':
        await writeSysctl(req.key, req.value);
        await send({ id: req.id, ok: true });
        return;
      case 'exec':
        await send({
          id: req.id,
          ok: true,
          result: await exec(req.argv, req.input, req.timeoutMs ?? 30_000),
        });
        return;
      case 'rtnl':
        await send({ id: req.id, ok: true, result: await runRtnlMethod(req.method, req.args) });
        return;
      default: {
        const unknownOp = (req as { op?: unknown }).op;
        throw new MeshError('INVALID_ARGUMENT', `unknown helper op ${JSON.stringify(unknownOp)}`);
      }
    }
  } catch (err) {
    const code = err instanceof MeshError ? err.code : 'INTERNAL';
    await send({ id: req.id, ok: false, code, message: errorMessage(err) }).catch(() => process.exit(1));
  }
}

process.on('message', (msg: HelperRequest) => {
  void handle(msg);
});
process.on('disconnect', () => process.exit(0));
// With a callback a closed channel (the daemon went away while this started)
// is an error passed here, not an uncaught ERR_IPC_CHANNEL_CLOSED: just leave.
process.send?.({ ready: true, pid: process.pid }, undefined, {}, (err: Error | null) => {
  if (err !== null) process.exit(0);
});
