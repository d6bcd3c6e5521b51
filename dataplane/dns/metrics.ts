/**
 * The resolver's counters, registered in a prom-client Registry the caller
 * passes in (the metrics module's, once it exists; a private one in tests).
 * Label values are fixed sets chosen here, never taken from packets, so the
 * number of series stays bounded whatever clients send.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Rcode } from './wire.js';

export type Transport = 'udp' | 'tcp';
export type DropReason = 'malformed' | 'overload' | 'oversized_frame' | 'too_many_connections';
export type UpstreamErrorReason = 'timeout' | 'send' | 'tcp' | 'mismatch' | 'no_upstream' | 'overload';

const RCODE_NAMES: Record<number, string> = {
  0: 'NOERROR',
  1: 'FORMERR',
  2: 'SERVFAIL',
  3: 'NXDOMAIN',
  4: 'NOTIMP',
  5: 'REFUSED',
};

export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? 'OTHER';
}

/**
 * The hot path only bumps plain numbers (a prom-client `inc` with labels
 * costs about as much as answering a cached query); the numbers are moved
 * into the prom-client counters when the registry is scraped.
 */
export class DnsMetrics {
  private readonly pending = {
    queriesUdp: 0,
    queriesTcp: 0,
    responsesByRcode: new Array<number>(16).fill(0),
    forwarded: 0,
    cacheHits: 0,
  };
  private readonly upstreamErrors: Counter<'reason'>;
  private readonly dropped: Counter<'reason'>;
  private readonly upstreamLatency: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    const pending = this.pending;
    const queries = new Counter({
      name: 'meshd_dns_queries_total',
      help: 'DNS queries received from sandboxes',
      labelNames: ['transport'],
      registers,
      collect() {
        queries.inc({ transport: 'udp' }, pending.queriesUdp);
        queries.inc({ transport: 'tcp' }, pending.queriesTcp);
        pending.queriesUdp = 0;
        pending.queriesTcp = 0;
      },
    });
    const responses = new Counter({
      name: 'meshd_dns_responses_total',
      help: 'DNS responses sent to sandboxes, by response code',
      labelNames: ['rcode'],
      registers,
      collect() {
        pending.responsesByRcode.forEach((count, rcode) => {
          if (count > 0) responses.inc({ rcode: rcodeName(rcode) }, count);
          pending.responsesByRcode[rcode] = 0;
        });
      },
    });
    const forwarded = new Counter({
      name: 'meshd_dns_forwarded_total',
      help: 'DNS queries forwarded to an upstream resolver',
      registers,
      collect() {
        forwarded.inc(pending.forwarded);
        pending.forwarded = 0;
      },
    });
    const cacheHits = new Counter({
      name: 'meshd_dns_answer_cache_hits_total',
      help: 'Cluster answers served from the encoded-answer cache',
      registers,
      collect() {
        cacheHits.inc(pending.cacheHits);
        pending.cacheHits = 0;
      },
    });
    this.upstreamErrors = new Counter({
      name: 'meshd_dns_upstream_errors_total',
      help: 'Upstream attempts that failed, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.dropped = new Counter({
      name: 'meshd_dns_dropped_total',
      help: 'Queries or connections dropped without an answer, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.upstreamLatency = new Histogram({
      name: 'meshd_dns_upstream_latency_seconds',
      help: 'Time from forwarding a query to the upstream answer',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
  }

  query(transport: Transport): void {
    if (transport === 'udp') this.pending.queriesUdp++;
    else this.pending.queriesTcp++;
  }
  response(rcode: number): void {
    this.pending.responsesByRcode[rcode & 0x0f]!++;
  }
  forward(): void {
    this.pending.forwarded++;
  }
  cacheHit(): void {
    this.pending.cacheHits++;
  }
  upstreamError(reason: UpstreamErrorReason): void {
    this.upstreamErrors.inc({ reason });
  }
  drop(reason: DropReason): void {
    this.dropped.inc({ reason });
  }
  upstreamLatencyMs(ms: number): void {
    this.upstreamLatency.observe(ms / 1000);
  }
}

export type { Rcode };
