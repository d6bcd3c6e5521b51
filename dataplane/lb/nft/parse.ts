import { sortBackends } from '../model.js';
import {
  ANY_LOCAL_ADDRESS,
  type LbBackend,
  type LbScope,
  type LbVirtualService,
  virtualServiceKey,
} from '../types.js';
import { ANY_ADDRESS_KEY, parseSelectorChainName, type ServiceFootprint, SLOT_MAPS } from './render.js';

/**
 * Pure decoding of `nft -j list table ip meshd` back into the LB model, so the
 * planner compares like with like, plus each service's kernel footprint (which
 * slot and draining elements exist) so an update deletes exactly what is there.
 * A service whose selection chain is damaged reads as absent: the next sync
 * rewrites it (drift repair).
 */

export interface ScopeDump {
  /** Base maps/chains hold exactly what the skeleton writes. */
  skeletonIntact: boolean;
  snatAddress: string | null;
  /** Selection chains holding their one rule. */
  selectors: Set<string>;
  /** Element keys (`addr . proto . port` or `proto . port`) with a verdict element. */
  verdicts: Set<string>;
  /** By element key, including orphans without a verdict. */
  footprints: Map<string, ServiceFootprint>;
  services: LbVirtualService[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const concatOf = (v: unknown): unknown[] => (isObject(v) ? asArray(v['concat']) : []);

function footprint(map: Map<string, ServiceFootprint>, key: string): ServiceFootprint {
  let f = map.get(key);
  if (f === undefined) {
    f = { slotIndexes: [], draining: [] };
    map.set(key, f);
  }
  return f;
}

export function parseScopeDump(scope: LbScope, json: unknown): ScopeDump {
  const items = isObject(json) ? asArray(json['nftables']) : [];
  const ruleCounts = new Map<string, number>();
  const maps = new Map<string, unknown[]>();
  let snatAddress: string | null = null;
  for (const item of items) {
    if (!isObject(item)) continue;
    const chain = item['chain'];
    if (isObject(chain) && typeof chain['name'] === 'string')
      ruleCounts.set(chain['name'], ruleCounts.get(chain['name']) ?? 0);
    for (const kind of ['map', 'set'] as const) {
      const m = item[kind];
      if (isObject(m) && typeof m['name'] === 'string') maps.set(m['name'], asArray(m['elem']));
    }
    const rule = item['rule'];
    if (isObject(rule) && typeof rule['chain'] === 'string') {
      ruleCounts.set(rule['chain'], (ruleCounts.get(rule['chain']) ?? 0) + 1);
      if (rule['chain'] === 'postrouting') {
        const snat = asArray(rule['expr']).find((e) => isObject(e) && isObject(e['snat']));
        const addr = isObject(snat) && isObject(snat['snat']) ? snat['snat']['addr'] : undefined;
        if (typeof addr === 'string') snatAddress = addr;
      }
    }
  }
  const skeletonIntact =
    ['vips', 'ports', 'draining', ...SLOT_MAPS.map((m) => m.name)].every((m) => maps.has(m)) &&
    ruleCounts.get('prerouting') === 2 &&
    ruleCounts.get('output') === 2 &&
    ruleCounts.get('postrouting') === (snatAddress === null ? 0 : 1);
  const selectors = new Set(
    [...ruleCounts].filter(([name, n]) => n === 1 && parseSelectorChainName(name)).map(([name]) => name),
  );
  const footprints = new Map<string, ServiceFootprint>();
  const slotValues = new Map<string, Map<number, string>>();
  for (const { name: map } of SLOT_MAPS) {
    for (const elem of maps.get(map) ?? []) {
      const [key, value] = asArray(elem);
      const k = concatOf(key);
      const v = concatOf(value);
      const index = k.at(-1);
      if (typeof index !== 'number' || v.length !== 2) continue;
      const elementKey = k.slice(0, -1).join(' . ');
      footprint(footprints, elementKey).slotIndexes.push(index);
      const values = slotValues.get(elementKey) ?? new Map<number, string>();
      slotValues.set(elementKey, values);
      values.set(index, `${v[0]}:${v[1]}`);
    }
  }
  for (const elem of maps.get('draining') ?? []) {
    const [address, protocol, port, backendAddress, backendPort] = concatOf(elem);
    const elementKey =
      address === ANY_ADDRESS_KEY ? `${protocol} . ${port}` : `${address} . ${protocol} . ${port}`;
    footprint(footprints, elementKey).draining.push(`${backendAddress} . ${backendPort}`);
  }
  const verdicts = new Set<string>();
  const services: LbVirtualService[] = [];
  for (const map of ['vips', 'ports']) {
    for (const elem of maps.get(map) ?? []) {
      const [key, verdict] = asArray(elem);
      const goto = isObject(verdict) ? verdict['goto'] : undefined;
      const target = isObject(goto) ? goto['target'] : undefined;
      const parts = concatOf(key);
      const elementKey = parts.join(' . ');
      verdicts.add(elementKey);
      if (!skeletonIntact || typeof target !== 'string' || !selectors.has(target)) continue;
      const [address, protocol, port] = map === 'vips' ? parts : [ANY_LOCAL_ADDRESS, ...parts];
      const spec = parseSelectorChainName(target);
      if (spec === null || typeof address !== 'string' || typeof port !== 'number') continue;
      if (protocol !== spec.protocol || spec.published !== (map === 'ports')) continue;
      const backends = new Map<string, LbBackend>();
      for (const value of slotValues.get(elementKey)?.values() ?? []) {
        const seen = backends.get(value);
        if (seen) seen.weight++;
        else {
          const [a, p] = value.split(':');
          backends.set(value, { address: a!, port: Number(p), weight: 1 });
        }
      }
      for (const d of footprints.get(elementKey)?.draining ?? []) {
        const [a, p] = d.split(' . ');
        if (!backends.has(`${a}:${p}`))
          backends.set(`${a}:${p}`, { address: a!, port: Number(p), weight: 0 });
      }
      services.push({
        key: virtualServiceKey(scope, spec.protocol, address, port),
        scope,
        protocol: spec.protocol,
        address,
        port,
        scheduler: spec.hash ? 'source-hash' : 'random',
        snatAddress: spec.snat ? snatAddress : null,
        backends: sortBackends([...backends.values()]),
      });
      // A slot count that disagrees with the chain's modulus must read as drift.
      if ((slotValues.get(elementKey)?.size ?? 0) !== spec.slots) services.pop();
    }
  }
  return { skeletonIntact, snatAddress, selectors, verdicts, footprints, services };
}
