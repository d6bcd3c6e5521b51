// Opens sockets inside a network namespace and hands them to the parent over
// IPC, then exits. Plain JavaScript with builtins only, so it starts without
// the TypeScript loader: ~0.1 s instead of ~0.8 s of CPU, which matters
// because every task sandbox needs one (the embedded DNS on 127.0.0.11:53).
// Started as `nsenter --net=/run/netns/NS node socket-opener.mjs '<json>'`;
// the parent (helper.ts openSocketsInNetns) validated the requests.
import dgram from 'node:dgram';
import net from 'node:net';

function send(message, handle) {
  return new Promise((resolve, reject) => {
    process.send(message, handle, {}, (err) => (err ? reject(err) : resolve()));
  });
}

function openUdp(address, port) {
  const socket = dgram.createSocket('udp4');
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => resolve(socket));
  });
}

function openTcp(address, port) {
  const server = net.createServer();
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: address, exclusive: true }, () => resolve(server));
  });
}

async function main() {
  const requests = JSON.parse(process.argv[2] ?? '[]');
  for (const r of requests) {
    const handle = r.kind === 'udp4' ? await openUdp(r.address, r.port) : await openTcp(r.address, r.port);
    const a = handle.address();
    await send({ opened: { kind: r.kind, address: a.address, port: a.port } }, handle);
    // The parent holds its own duplicate of the descriptor now; ours must go
    // or both processes would compete for datagrams and connections.
    handle.close();
  }
  // No explicit end: a message sent behind a handle is queued until the parent
  // acknowledges the handle, so the parent disconnects once it holds every
  // socket, and this process exits with its channel.
}

main().catch(async (err) => {
  await send({
    error: { code: err?.code ?? 'SOCKET_OPEN_FAILED', message: String(err?.message ?? err) },
  }).catch(() => {});
  process.exit(1);
});
