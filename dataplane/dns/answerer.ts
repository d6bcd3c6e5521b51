/**
 * The answerer (pure): given the cluster records, the asking sandbox's
 * networks and one parsed query, decide to answer (with which records) or to
 * forward. The rule that matters most: a cluster name, in any case, is never
 * forwarded, whatever the query type (moby#35118 leaked AAAA queries).
 */
import type { Rng } from '../../src/common/rng.js';
import type { ResourceRecord } from './encode.js';
import {
  addressOfReverseName,
  type DnsIndex,
  inSubnet,
  type NameRecords,
  type NetworkRecords,
} from './records.js';
import { type Query, RCODE, type Rcode, RRCLASS, RRTYPE } from './wire.js';

export type Decision =
  | {
      kind: 'answer';
      rcode: Rcode;
      answers: ResourceRecord[];
      additionals: ResourceRecord[];
      /** False when the answer was shuffled: the encoded bytes must not be reused. */
      cacheable: boolean;
    }
  | { kind: 'forward' };

const NXDOMAIN: Decision = {
  kind: 'answer',
  rcode: RCODE.NXDOMAIN,
  answers: [],
  additionals: [],
  cacheable: true,
};
const NODATA: Decision = {
  kind: 'answer',
  rcode: RCODE.NOERROR,
  answers: [],
  additionals: [],
  cacheable: true,
};
const REFUSED: Decision = {
  kind: 'answer',
  rcode: RCODE.REFUSED,
  answers: [],
  additionals: [],
  cacheable: true,
};

/** Fisher–Yates on a copy, with the injected Rng (never Math.random: replays must be exact). */
export function shuffled<T>(items: readonly T[], rng: Rng): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const tmp = out[i]!;
    out[i] = out[j]!;
    out[j] = tmp;
  }
  return out;
}

function scopeLookup<T>(
  index: DnsIndex,
  scope: readonly string[],
  pick: (records: NetworkRecords) => T | undefined,
): T | undefined {
  for (const networkId of scope) {
    const records = index.networks.get(networkId);
    if (records === undefined) continue;
    const hit = pick(records);
    if (hit !== undefined) return hit;
  }
  return undefined;
}

function answerName(records: NameRecords, query: Query, rng: Rng): Decision {
  const wantsA = query.qtype === RRTYPE.A || query.qtype === RRTYPE.ANY;
  const wantsSrv = query.qtype === RRTYPE.SRV || query.qtype === RRTYPE.ANY;
  if (records.kind === 'addresses') {
    if (!wantsA) return NODATA;
    const addresses = records.shuffle ? shuffled(records.addresses, rng) : records.addresses;
    return {
      kind: 'answer',
      rcode: RCODE.NOERROR,
      answers: addresses.map((address) => ({ type: 'A', name: undefined, ttlS: records.ttlS, address })),
      additionals: [],
      cacheable: !records.shuffle || records.addresses.length < 2,
    };
  }
  if (!wantsSrv) return NODATA;
  const targets = records.shuffle ? shuffled(records.targets, rng) : records.targets;
  const answers: ResourceRecord[] = targets.map((t) => ({
    type: 'SRV',
    name: undefined,
    ttlS: records.ttlS,
    priority: 0,
    weight: 0,
    port: t.port,
    target: t.target,
  }));
  const seen = new Set<string>();
  const additionals: ResourceRecord[] = [];
  for (const t of targets) {
    if (seen.has(t.target)) continue;
    seen.add(t.target);
    additionals.push({ type: 'A', name: t.target, ttlS: records.ttlS, address: t.address });
  }
  return {
    kind: 'answer',
    rcode: RCODE.NOERROR,
    answers,
    additionals,
    cacheable: !records.shuffle || records.targets.length < 2,
  };
}

function answerReverse(index: DnsIndex, scope: readonly string[], query: Query): Decision | undefined {
  const address = addressOfReverseName(query.nameLower);
  if (address === undefined) return undefined;
  const target = scopeLookup(index, scope, (r) => r.pointers.get(query.nameLower));
  if (target !== undefined) {
    if (query.qtype !== RRTYPE.PTR && query.qtype !== RRTYPE.ANY) return NODATA;
    return {
      kind: 'answer',
      rcode: RCODE.NOERROR,
      answers: [{ type: 'PTR', name: undefined, ttlS: index.taskTtlS, target }],
      additionals: [],
      cacheable: true,
    };
  }
  // Reverse names of cluster addresses stay inside: upstream knows nothing
  // about overlay subnets, and asking it leaks the cluster's layout.
  if (index.clusterPointers.has(query.nameLower)) return NXDOMAIN;
  if (index.subnets.some((s) => inSubnet(address, s))) return NXDOMAIN;
  return undefined;
}

/**
 * Decides how to answer `query` for a sandbox attached to `scope` (network IDs
 * in attachment order; the first network that knows the name wins).
 */
export function decide(index: DnsIndex, scope: readonly string[], query: Query, rng: Rng): Decision {
  if (!query.hostnameLike) return { kind: 'forward' };
  const name = query.nameLower;
  const reverse = answerReverse(index, scope, query);
  if (reverse !== undefined) return classCheck(query, reverse);
  const records = scopeLookup(index, scope, (r) => r.names.get(name));
  if (records !== undefined) return classCheck(query, answerName(records, query, rng));
  // Known on a network this sandbox is not attached to: it does not exist for
  // this task, and it must not leak upstream either.
  if (index.clusterNames.has(name)) return classCheck(query, NXDOMAIN);
  return { kind: 'forward' };
}

function classCheck(query: Query, decision: Decision): Decision {
  if (query.qclass === RRCLASS.IN || query.qclass === RRCLASS.ANY) return decision;
  return REFUSED;
}
