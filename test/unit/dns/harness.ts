/** Loopback harness for the DNS server tests: a real upstream (UDP + TCP) and real client sockets. */
import dgram from 'node:dgram';
import net from 'node:net';
import { encodeResponse, type ResourceRecord } from '../../../dataplane/dns/encode.js';
import { parseQuery, RCODE } from '../../../dataplane/dns/wire.js';

/** Question section for evil.example.com A IN. */
const FORGED_QUESTION = Buffer.from([
  4, 101, 118, 105, 108, 7, 101, 120, 97, 109, 112, 108, 101, 3, 99, 111, 109, 0, 0, 1, 0, 1,
]);

export type UpstreamMode = 'answer' | 'silent' | 'truncate' | 'forge';

/** A tiny authoritative upstream: answers every A query with `addresses`, counts what it saw. */
export class FakeUpstream {
  mode: UpstreamMode = 'answer';
  addresses = ['192.0.2.1'];
  readonly seenNames: string[] = [];
  readonly seenIds: number[] = [];
  private constructor(
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
    readonly port: number,
  ) {}

  static async start(): Promise<FakeUpstream> {
    for (let tries = 0; tries < 20; tries++) {
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
      const port = udp.address().port;
      const tcp = net.createServer();
      const ok = await new Promise<boolean>((resolve) => {
        tcp.once('error', () => resolve(false));
        tcp.listen(port, '127.0.0.1', () => resolve(true));
      });
      if (!ok) {
        udp.close();
        continue;
      }
      const upstream = new FakeUpstream(udp, tcp, port);
      udp.on('message', (msg, rinfo) => upstream.onUdp(msg, rinfo));
      tcp.on('connection', (c) => upstream.onTcp(c));
      return upstream;
    }
    throw new Error('no free loopback port pair for the fake upstream');
  }

  private respond(msg: Buffer, truncate: boolean): Buffer | undefined {
    const r = parseQuery(msg);
    if (r.kind !== 'query') return undefined;
    this.seenNames.push(r.query.nameLower);
    this.seenIds.push(r.query.id);
    const answers: ResourceRecord[] = this.addresses.map((address) => ({
      type: 'A',
      name: undefined,
      ttlS: 60,
      address,
    }));
    return encodeResponse(msg, r.query, {
      rcode: RCODE.NOERROR,
      authoritative: true,
      answers,
      additionals: [],
      maxBytes: truncate ? 12 + (r.query.questionEnd - 12) + 1 : 65535,
    });
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.mode === 'silent') {
      const r = parseQuery(msg);
      if (r.kind === 'query') this.seenNames.push(r.query.nameLower);
      return;
    }
    if (this.mode === 'forge') {
      // Right ID, wrong question: what an off-path spoofer that guessed the ID sends.
      const forged = this.respond(Buffer.concat([msg.subarray(0, 12), FORGED_QUESTION]), false);
      if (forged !== undefined) this.udp.send(forged, rinfo.port, rinfo.address);
      return;
    }
    const out = this.respond(msg, this.mode === 'truncate');
    if (out !== undefined) this.udp.send(out, rinfo.port, rinfo.address);
  }

  private onTcp(conn: net.Socket): void {
    let buf = Buffer.alloc(0);
    conn.on('error', () => conn.destroy());
    conn.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const out = this.respond(buf.subarray(2, 2 + buf.readUInt16BE(0)), false);
      if (out === undefined) return conn.destroy();
      const frame = Buffer.alloc(2 + out.length);
      frame.writeUInt16BE(out.length, 0);
      out.copy(frame, 2);
      conn.end(frame);
    });
  }

  close(): void {
    this.udp.close();
    this.tcp.close();
  }
}

export async function bindUdp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  return s;
}

export async function listenTcp(): Promise<net.Server> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return s;
}

/** Sends one UDP query and waits for the reply with the same ID (or rejects after `timeoutMs`). */
export async function udpExchange(port: number, query: Buffer, timeoutMs = 3000): Promise<Buffer> {
  const client = await bindUdp();
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no UDP answer within ${timeoutMs} ms`)), timeoutMs);
      client.on('message', (msg) => {
        if (msg.readUInt16BE(0) !== query.readUInt16BE(0)) return;
        clearTimeout(timer);
        resolve(msg);
      });
      client.send(query, port, '127.0.0.1');
    });
  } finally {
    client.close();
  }
}

/** Sends raw bytes over a fresh TCP connection; resolves with the first framed reply, or undefined on close. */
export function tcpExchange(port: number, raw: Buffer, timeoutMs = 3000): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`no TCP answer or close within ${timeoutMs} ms`));
    }, timeoutMs);
    conn.on('connect', () => conn.write(raw));
    conn.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        clearTimeout(timer);
        conn.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
    conn.on('error', () => {});
    conn.on('close', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

export function framed(msg: Buffer): Buffer {
  const out = Buffer.alloc(2 + msg.length);
  out.writeUInt16BE(msg.length, 0);
  msg.copy(out, 2);
  return out;
}
