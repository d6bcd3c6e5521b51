// A task for the VM cluster test: answers one line per HTTP GET, naming the
// VM it runs on and its task ID, so the test sees which VM's task served it.
// Extra arguments (a run marker) are ignored: the test finds orphans by them.
import net from 'node:net';
import { hostname } from 'node:os';

const port = Number(process.argv[2] ?? '80');
const id = `${hostname()} ${process.env.MESHD_TASK_ID ?? '?'}`;
const server = net.createServer((socket) => {
  let buffered = '';
  socket.on('error', () => {});
  socket.on('data', (chunk) => {
    buffered += chunk.toString();
    if (!buffered.includes('\r\n\r\n')) return;
    const body = `${id}\n`;
    socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  });
});
server.listen(port, '0.0.0.0');
process.on('SIGTERM', () => process.exit(0));
