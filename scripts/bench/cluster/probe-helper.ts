/**
 * Runs inside one host's ingress network namespace (started through
 * `nsenter --net`): the namespace the published port's DNAT sends packets
 * from, so a backend that answers here is reachable through that host's LB.
 *
 * stdin: one JSON line per batch, `{"source": "10.255.0.2", "targets":
 * ["10.0.0.5:80#tag", ...]}`; the tag lets the bench ask again about an
 * address a newer task took over. `source` is this host's LB address on the
 * network, the address the LB SNATs to: every host's bridge holds the same
 * gateway address, so a reply to any other local address would go to the
 * backend's own host.
 * stdout: one JSON line per target the first time it answers an HTTP GET,
 * `{"target": "...", "atMs": <epoch ms, sub-ms>}`. A target that does not
 * answer is retried (backing off to RETRY_MAX_MS) until the helper is killed; at most
 * CONCURRENCY connections are open at once, each bounded by TIMEOUT_MS.
 */
import { connect } from 'node:net';
import { createInterface } from 'node:readline';

const CONCURRENCY = 32;
const TIMEOUT_MS = 1_000;
/** First retry after RETRY_MIN_MS, doubling to RETRY_MAX_MS: a reachability stamp is late by at most that. */
const RETRY_MIN_MS = 25;
const RETRY_MAX_MS = 200;

const queue: string[] = [];
/** Targets not answered yet, with the wait before their next try. */
const queued = new Map<string, number>();
let source: string | undefined;
let open = 0;
const nowMs = () => performance.timeOrigin + performance.now();

function probeOnce(target: string): Promise<boolean> {
  const [host, port] = (target.split('#')[0] ?? '').split(':');
  return new Promise((resolve) => {
    const socket = connect({ host: host!, port: Number(port), localAddress: source });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(TIMEOUT_MS, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('GET / HTTP/1.0\r\n\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.startsWith('HTTP/1.')) done(true);
    });
    socket.on('end', () => done(reply.startsWith('HTTP/1.')));
  });
}

function pump(): void {
  while (open < CONCURRENCY && queue.length > 0) {
    const target = queue.shift()!;
    open++;
    void probeOnce(target).then((ok) => {
      open--;
      if (ok) {
        queued.delete(target);
        process.stdout.write(`${JSON.stringify({ target, atMs: nowMs() })}\n`);
      } else {
        const waitMs = queued.get(target) ?? RETRY_MIN_MS;
        queued.set(target, Math.min(waitMs * 2, RETRY_MAX_MS));
        setTimeout(() => {
          queue.push(target);
          pump();
        }, waitMs);
      }
      pump();
    });
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const batch = JSON.parse(line) as { source: string; targets: string[] };
  source = batch.source;
  const { targets } = batch;
  for (const t of targets) {
    if (queued.has(t)) continue;
    queued.set(t, RETRY_MIN_MS);
    queue.push(t);
  }
  pump();
});
process.stdin.on('end', () => process.exit(0));
