// Plain JS (no bundle, builtins only: starts in ~1.5 s under emulation).
//   node tcp-peer.mjs serve ADDRESS PORT NAME
//     answers each TCP connection with "NAME CLIENT_ADDRESS\n" and keeps it open until the client
//     closes; answers each UDP datagram to the same port with the same line.
//   node tcp-peer.mjs hold ADDRESS PORT COUNT DIR
//     opens COUNT connections, writes the answers to DIR/held.json, waits for DIR/release,
//     closes them, opens COUNT fresh ones (closed at once), writes DIR/after.json.
import { createSocket } from 'node:dgram';
import { existsSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const [mode, address, portText, arg, dir] = process.argv.slice(2);
const port = Number(portText);

function open() {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port, timeout: 10_000 });
    socket.once('data', (chunk) => resolve({ socket, answer: chunk.toString().trim() }));
    socket.once('timeout', () => reject(new Error(`timeout connecting to ${address}:${port}`)));
    socket.once('error', reject);
  });
}

if (mode === 'serve') {
  createServer((socket) => {
    socket.on('error', () => {});
    socket.write(`${arg} ${socket.remoteAddress}\n`);
    socket.on('end', () => socket.end());
  }).listen(port, address);
  const udp = createSocket('udp4');
  udp.on('message', (_msg, rinfo) => udp.send(`${arg} ${rinfo.address}\n`, rinfo.port, rinfo.address));
  udp.bind(port, address);
} else if (mode === 'hold') {
  const count = Number(arg);
  const held = [];
  for (let i = 0; i < count; i++) held.push(await open());
  writeFileSync(`${dir}/held.json`, JSON.stringify(held.map((h) => h.answer)));
  for (let i = 0; i < 600 && !existsSync(`${dir}/release`); i++) await sleep(100);
  for (const h of held) h.socket.end();
  await sleep(500);
  const after = [];
  for (let i = 0; i < count; i++) {
    const fresh = await open();
    after.push(fresh.answer);
    fresh.socket.end();
  }
  writeFileSync(`${dir}/after.json`, JSON.stringify(after));
  process.exit(0);
}
