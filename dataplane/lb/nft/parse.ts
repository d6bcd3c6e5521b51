import { sortBackends } from '../model.js';
import {
  ANY_LOCAL_ADDRESS,
  type LbBackend,
  type LbProtocol,
  type LbScheduler,
  type LbScope,
  type LbVirtualService,
  virtualServiceKey,
} from '../types.js';
import { DRAINING_COMMENT } from './render.js';

/**
 * Pure decoding of `nft -j list table ip meshd` back into the LB model, so the
 * planner compares like with like. Anything unexpected in a selection chain
 * makes that service read as absent: the next apply rewrites it (drift repair).
 */

export interface ScopeDump {
  /** Base chains hold exactly the rules the skeleton writes. */
  skeletonIntact: boolean;
  snatAddress: string | null;
  services: LbVirtualService[];
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

interface ChainRules {
  rules: Json[][];
  comments: (string | undefined)[];
}

export function parseScopeDump(scope: LbScope, json: unknown): ScopeDump {
  const items = isObject(json) ? asArray(json['nftables']) : [];
  const chains = new Map<string, ChainRules>();
  const elements: { map: string; key: unknown[]; target: string }[] = [];
  const maps = new Set<string>();
  for (const item of items) {
    if (!isObject(item)) continue;
    const chain = item['chain'];
    if (isObject(chain) && typeof chain['name'] === 'string' && !chains.has(chain['name']))
      chains.set(chain['name'], { rules: [], comments: [] });
    const map = item['map'];
    if (isObject(map) && typeof map['name'] === 'string') {
      maps.add(map['name']);
      for (const elem of asArray(map['elem'])) {
        const [key, verdict] = asArray(elem);
        const goto = isObject(verdict) ? verdict['goto'] : undefined;
        const concat = isObject(key) ? key['concat'] : undefined;
        if (isObject(goto) && typeof goto['target'] === 'string' && Array.isArray(concat))
          elements.push({ map: map['name'], key: concat, target: goto['target'] });
      }
    }
    const rule = item['rule'];
    if (isObject(rule) && typeof rule['chain'] === 'string') {
      const entry = chains.get(rule['chain']) ?? { rules: [], comments: [] };
      chains.set(rule['chain'], entry);
      entry.rules.push(asArray(rule['expr']).filter(isObject));
      entry.comments.push(typeof rule['comment'] === 'string' ? rule['comment'] : undefined);
    }
  }
  const post = chains.get('postrouting');
  const snatAddress = post === undefined ? null : parseSnat(post.rules[0]);
  const skeletonIntact =
    maps.has('vips') &&
    maps.has('ports') &&
    chains.get('prerouting')?.rules.length === 2 &&
    chains.get('output')?.rules.length === 2 &&
    post !== undefined &&
    post.rules.length === (snatAddress === null ? 0 : 1);
  const services: LbVirtualService[] = [];
  if (skeletonIntact)
    for (const element of elements) {
      const service = parseService(scope, element, chains.get(element.target), snatAddress);
      if (service !== null) services.push(service);
    }
  return { skeletonIntact, snatAddress, services };
}

function parseSnat(rule: Json[] | undefined): string | null {
  const snat = rule?.find((e) => isObject(e['snat']))?.['snat'];
  return isObject(snat) && typeof snat['addr'] === 'string' ? snat['addr'] : null;
}

function parseService(
  scope: LbScope,
  element: { map: string; key: unknown[]; target: string },
  chain: ChainRules | undefined,
  scopeSnat: string | null,
): LbVirtualService | null {
  let address: string;
  let protocol: unknown;
  let port: unknown;
  if (element.map === 'vips') [address, protocol, port] = element.key as [string, unknown, unknown];
  else if (element.map === 'ports') {
    address = ANY_LOCAL_ADDRESS;
    [protocol, port] = element.key;
  } else return null;
  if ((protocol !== 'tcp' && protocol !== 'udp') || typeof port !== 'number' || typeof address !== 'string')
    return null;
  const first = chain?.rules[0];
  if (chain === undefined || first === undefined || chain.rules.length > 2) return null;
  let scheduler: LbScheduler = 'random';
  let snatAddress: string | null = null;
  const slots = new Map<string, LbBackend>();
  const dnat = first.find((e) => isObject(e['dnat']))?.['dnat'];
  if (isObject(dnat)) {
    const map = isObject(dnat['addr']) ? dnat['addr']['map'] : undefined;
    if (!isObject(map) || !isObject(map['key']) || !isObject(map['data'])) return null;
    if (isObject(map['key']['jhash'])) scheduler = 'source-hash';
    for (const entry of asArray(map['data']['set'])) {
      const [, target] = asArray(entry);
      const [backendAddress, backendPort] = isObject(target) ? asArray(target['concat']) : [];
      if (typeof backendAddress !== 'string' || typeof backendPort !== 'number') return null;
      const id = `${backendAddress}:${backendPort}`;
      const seen = slots.get(id);
      if (seen) seen.weight++;
      else slots.set(id, { address: backendAddress, port: backendPort, weight: 1 });
    }
    if (first.some((e) => isObject(e['mangle']))) snatAddress = scopeSnat;
  } else if (!first.some((e) => isObject(e['reject']))) return null;
  const second = chain.rules[1];
  if (second !== undefined) {
    if (chain.comments[1] !== DRAINING_COMMENT) return null;
    for (const [backendAddress, backendPort] of drainingPairs(second)) {
      const id = `${backendAddress}:${backendPort}`;
      if (!slots.has(id)) slots.set(id, { address: backendAddress, port: backendPort, weight: 0 });
    }
  }
  return {
    key: virtualServiceKey(scope, protocol, address, port),
    scope,
    protocol: protocol as LbProtocol,
    address,
    port,
    scheduler,
    snatAddress,
    backends: sortBackends([...slots.values()]),
  };
}

function drainingPairs(rule: Json[]): [string, number][] {
  const out: [string, number][] = [];
  for (const e of rule) {
    const match = e['match'];
    if (!isObject(match)) continue;
    const right = match['right'];
    const set = isObject(right) ? asArray(right['set']) : [];
    for (const member of set) {
      const concat = isObject(member) ? asArray(member['concat']) : [];
      const [a, p] = concat;
      if (typeof a === 'string' && typeof p === 'number') out.push([a, p]);
    }
  }
  return out;
}
