/**
 * Fuzz client, run inside a sandbox namespace:
 * `node --import tsx fuzz-client.ts --seed N --udp COUNT --tcp COUNT`.
 * Sends mutated and malformed DNS packets to 127.0.0.11:53 over UDP, and bad
 * TCP streams, bounded in count and time; prints one JSON summary line.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { Packet, type Question } from 'dns2';
import { type Rng, SeededRng } from '../../../src/common/rng.js';

const SERVER = '127.0.0.11';
const PORT = 53;
const UDP_BATCH = 100;
const TCP_CONCURRENCY = 10;
const TCP_STREAM_TIMEOUT_MS = 1000;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function encodeQuery(name: string, type: number, id: number): Buffer {
  const p = new Packet();
  p.header.id = id;
  p.header.rd = 1;
  p.questions.push({ name, type, class: Packet.CLASS.IN } as unknown as Question);
  return p.toBuffer();
}

const CORPUS = [
  encodeQuery('web', Packet.TYPE.A, 1),
  encodeQuery('tasks.web', Packet.TYPE.A, 2),
  encodeQuery('_http._tcp.web', Packet.TYPE.SRV, 3),
  encodeQuery('2.1.0.10.in-addr.arpa', Packet.TYPE.PTR, 4),
  encodeQuery('cache', Packet.TYPE.AAAA, 5),
  encodeQuery('www.example.test', Packet.TYPE.A, 6),
  encodeQuery('unknown.example.test', Packet.TYPE.MX, 7),
];

function randomBytes(rng: Rng, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = rng.int(256);
  return out;
}

/** One malformed or mutated query; the kind is chosen by the seeded Rng. */
export function mutate(rng: Rng): Buffer {
  const base = Buffer.from(CORPUS[rng.int(CORPUS.length)]!);
  switch (rng.int(9)) {
    case 0: {
      for (let n = rng.intBetween(1, 4); n > 0; n--) base[rng.int(base.length)] = rng.int(256);
      return base;
    }
    case 1:
      return base.subarray(0, rng.int(base.length));
    case 2:
      return Buffer.concat([base, randomBytes(rng, rng.intBetween(1, 300))]);
    case 3:
      return randomBytes(rng, rng.int(600));
    case 4: {
      // Section counts that promise far more than the packet holds.
      base.writeUInt16BE(rng.int(0x10000), 4 + 2 * rng.int(4));
      return base;
    }
    case 5: {
      // Compression loop: the question name points at itself / at the header.
      base[12] = 0xc0;
      base[13] = rng.int(2) === 0 ? 12 : rng.int(16);
      return base;
    }
    case 6: {
      // A label that claims to run past the end of the packet.
      base[12] = rng.intBetween(40, 63);
      return base.subarray(0, Math.min(base.length, 20));
    }
    case 7: {
      // Response bit, odd opcodes and reserved flags.
      base[2] = rng.int(256);
      base[3] = rng.int(256);
      return base;
    }
    default: {
      // An OPT record with random contents in the additional section.
      base.writeUInt16BE(1, 10);
      return Buffer.concat([base, Buffer.from([0, 0, 41]), randomBytes(rng, rng.intBetween(0, 20))]);
    }
  }
}

async function fuzzUdp(rng: Rng, count: number): Promise<{ sent: number; replies: number }> {
  const socket = dgram.createSocket('udp4');
  let replies = 0;
  socket.on('message', () => replies++);
  await new Promise<void>((resolve) => socket.bind(0, resolve));
  let sent = 0;
  while (sent < count) {
    const batch = Math.min(UDP_BATCH, count - sent);
    await Promise.all(
      Array.from(
        { length: batch },
        () => new Promise<void>((resolve) => socket.send(mutate(rng), PORT, SERVER, () => resolve())),
      ),
    );
    sent += batch;
    // Let the resolver drain its socket buffer between batches.
    await new Promise((r) => setTimeout(r, 2));
  }
  await new Promise((r) => setTimeout(r, 500));
  socket.close();
  return { sent, replies };
}

function badStream(rng: Rng): Buffer {
  const frame = (body: Buffer): Buffer => {
    const out = Buffer.alloc(2 + body.length);
    out.writeUInt16BE(body.length, 0);
    body.copy(out, 2);
    return out;
  };
  switch (rng.int(6)) {
    case 0: {
      const out = Buffer.alloc(2 + 100);
      out.writeUInt16BE(rng.intBetween(4097, 65535), 0);
      return out;
    }
    case 1:
      return Buffer.from([0, 0]);
    case 2:
      return randomBytes(rng, rng.intBetween(1, 2000));
    case 3:
      return Buffer.concat([frame(CORPUS[0]!), randomBytes(rng, rng.intBetween(1, 100))]);
    case 4:
      return Buffer.concat(Array.from({ length: 40 }, () => frame(mutate(rng))));
    default: {
      const out = Buffer.alloc(12);
      out.writeUInt16BE(300, 0);
      return out;
    }
  }
}

function oneStream(bytes: Buffer): Promise<'closed_by_server' | 'timeout'> {
  return new Promise((resolve) => {
    const conn = net.connect(PORT, SERVER);
    const timer = setTimeout(() => {
      conn.destroy();
      resolve('timeout');
    }, TCP_STREAM_TIMEOUT_MS);
    conn.on('connect', () => conn.write(bytes));
    conn.on('data', () => {});
    conn.on('error', () => {});
    conn.on('close', () => {
      clearTimeout(timer);
      resolve('closed_by_server');
    });
  });
}

async function fuzzTcp(rng: Rng, count: number): Promise<{ streams: number; closedByServer: number }> {
  let closedByServer = 0;
  let started = 0;
  const worker = async (): Promise<void> => {
    while (started < count) {
      started++;
      if ((await oneStream(badStream(rng))) === 'closed_by_server') closedByServer++;
    }
  };
  await Promise.all(Array.from({ length: TCP_CONCURRENCY }, worker));
  return { streams: count, closedByServer };
}

const seed = arg('seed', 1);
const rng = new SeededRng(seed);
const udp = await fuzzUdp(rng, arg('udp', 20_000));
const tcp = await fuzzTcp(rng, arg('tcp', 200));
process.stdout.write(`${JSON.stringify({ seed, udp, tcp })}\n`);
