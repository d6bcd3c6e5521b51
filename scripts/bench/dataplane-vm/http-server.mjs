// Plain JS, builtins only (no bundle: starts in ~1.5 s under emulation, the bundle takes tens).
//   node http-server.mjs ADDRESS PORT
// The task of the data-path benchmark: answers the first bytes of each request with a fixed
// HTTP/1.1 response and closes, the cheapest server wrk accepts, so it costs as little as
// possible next to the path being measured.
import { createServer } from 'node:net';

const [address = '0.0.0.0', port = '8080'] = process.argv.slice(2);
const reply = 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n';

createServer((socket) => {
  socket.on('error', () => {});
  socket.once('data', () => socket.end(reply));
}).listen({ host: address, port: Number(port), backlog: 1024 });
