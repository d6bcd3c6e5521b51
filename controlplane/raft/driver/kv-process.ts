/**
 * A small key-value manager process: one RaftNode with a KvStateMachine,
 * real WAL, gRPC over mutual TLS. The real-process tests and `npm run bench
 * -- raft` start 3 or 5 of these on loopback and drive them through JSON
 * lines on stdin; answers are JSON lines on stdout. Configuration comes in
 * MESHD_KV_CONFIG (JSON, see KvProcessConfig).
 *
 *   {"op":"peers","peers":{"n2":"127.0.0.1:4000"}}
 *   {"op":"put","req":1,"k":"a","v":"1"}         → {"req":1,"ok":true,"index":7}
 *   {"op":"get","req":2,"k":"a"}                 → {"req":2,"ok":true,"value":"1"}
 *   {"op":"status","req":3}                      → {"req":3,"ok":true,"status":{...},"rssBytes":...}
 *   {"op":"dump","req":4}                        → committed log digest and the whole map
 *   {"op":"bench","req":5,"count":N,"concurrency":C,"valueBytes":B}
 *   {"op":"stop","req":6}                        → graceful stop (leader hand-off), then exit 0
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { credentials, ServerCredentials } from '@grpc/grpc-js';
import { errorMessage } from '../../../src/common/errors.js';
import { KvStateMachine, kvPut } from './kv-state-machine.js';
import { RaftNode } from './raft-node.js';

export interface KvProcessConfig {
  id: string;
  dataDir: string;
  voters: string[];
  /** 0 lets the OS choose; a restart passes the port it had. */
  raftPort: number;
  peers: Record<string, string>;
  caFile: string;
  certFile: string;
  keyFile: string;
  heartbeatMs?: number;
  electionMs?: number;
  snapshotEveryEntries?: number;
}

type Command = { op: string; req?: number; [field: string]: unknown };

function reply(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function runBench(node: RaftNode, count: number, concurrency: number, valueBytes: number) {
  const value = 'x'.repeat(valueBytes);
  const latenciesMs: number[] = [];
  let next = 0;
  let failures = 0;
  const t0 = performance.now();
  async function worker(w: number): Promise<void> {
    while (next < count) {
      const i = next++;
      const start = performance.now();
      try {
        await node.propose(kvPut(`bench-${w}-${i}`, value));
        latenciesMs.push(performance.now() - start);
      } catch {
        failures += 1;
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const elapsedMs = performance.now() - t0;
  latenciesMs.sort((a, b) => a - b);
  return {
    committed: latenciesMs.length,
    failures,
    elapsedMs,
    commitsPerSec: (latenciesMs.length * 1000) / elapsedMs,
    p50Ms: percentile(latenciesMs, 50),
    p99Ms: percentile(latenciesMs, 99),
  };
}

async function main(): Promise<void> {
  const raw = process.env['MESHD_KV_CONFIG'];
  if (raw === undefined) throw new Error('MESHD_KV_CONFIG must hold the JSON configuration');
  const cfg = JSON.parse(raw) as KvProcessConfig;
  const ca = readFileSync(cfg.caFile);
  const cert = readFileSync(cfg.certFile);
  const key = readFileSync(cfg.keyFile);
  const sm = new KvStateMachine();
  const node = await RaftNode.start({
    id: cfg.id,
    dataDir: cfg.dataDir,
    stateMachine: sm,
    listenAddress: `127.0.0.1:${cfg.raftPort}`,
    serverCredentials: ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], true),
    channelCredentials: credentials.createSsl(ca, key, cert),
    peers: cfg.peers,
    bootstrap: { voters: cfg.voters, learners: [] },
    ...(cfg.heartbeatMs === undefined ? {} : { heartbeatMs: cfg.heartbeatMs }),
    ...(cfg.electionMs === undefined ? {} : { electionMs: cfg.electionMs }),
    ...(cfg.snapshotEveryEntries === undefined ? {} : { snapshotEveryEntries: cfg.snapshotEveryEntries }),
    requestTimeoutMs: 3000,
    onFatal: (err) => {
      process.stderr.write(`kv-process: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  });
  reply({ event: 'listening', id: cfg.id, raftPort: node.port() });

  const handle = async (cmd: Command): Promise<Record<string, unknown>> => {
    switch (cmd.op) {
      case 'peers':
        for (const [id, address] of Object.entries(cmd['peers'] as Record<string, string>)) {
          if (id !== cfg.id) node.addPeer(id, address);
        }
        return {};
      case 'put': {
        const { index } = await node.propose(kvPut(String(cmd['k']), String(cmd['v'])));
        return { index };
      }
      case 'get': {
        await node.linearizableRead();
        return { value: sm.data.get(String(cmd['k'])) ?? null };
      }
      case 'status':
        return {
          status: node.status(),
          rssBytes: process.memoryUsage().rss,
          cpuMicros: process.cpuUsage(),
          wal: node.walCounters(),
        };
      case 'dump': {
        const log = node
          .committedEntries()
          .map((e) => [e.index, e.term, createHash('sha1').update(e.data).digest('hex').slice(0, 12)]);
        return { status: node.status(), log, kv: Object.fromEntries(sm.data) };
      }
      case 'bench':
        return runBench(
          node,
          Number(cmd['count']),
          Number(cmd['concurrency']),
          Number(cmd['valueBytes'] ?? 100),
        );
      case 'stop':
        await node.stop({ transferLeadership: true });
        setImmediate(() => process.exit(0));
        return {};
      default:
        throw new Error(`unknown op "${cmd.op}"; accepted: peers, put, get, status, dump, bench, stop`);
    }
  };

  createInterface({ input: process.stdin }).on('line', (line) => {
    let cmd: Command;
    try {
      cmd = JSON.parse(line) as Command;
    } catch {
      reply({ ok: false, error: `not JSON: ${line.slice(0, 80)}` });
      return;
    }
    handle(cmd).then(
      (result) => reply({ req: cmd.req, ok: true, ...result }),
      (err: unknown) => reply({ req: cmd.req, ok: false, error: errorMessage(err) }),
    );
  });
  process.stdin.on('end', () => {
    void node.stop({ transferLeadership: false }).then(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`kv-process: ${errorMessage(err)}\n`);
  process.exit(1);
});
