import { ANY_LOCAL_ADDRESS, type LbBackend, type LbProtocol, type LbVirtualService } from '../types.js';

/**
 * Pure rendering of nft commands for one namespace's `ip meshd` table.
 * Layout: see the comment at the top of backend.ts and dataplane/lb/README.md.
 */

export const TABLE = 'meshd';
export const SNAT_MARK = 0x00200000;
/** Stands for ANY_LOCAL_ADDRESS in the `draining` set (published ports). */
export const ANY_ADDRESS_KEY = '0.0.0.0';

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
const T = `ip ${TABLE}`;

/**
 * Slot maps, one per (VIP | published) × protocol: the key names `tcp dport` / `udp dport`
 * because nft 1.0.6 rejects a rule that matches l4proto and then uses `th dport`
 * ("conflicting protocols specified") when it re-reads the ruleset.
 */
export function slotMapName(published: boolean, protocol: LbProtocol): string {
  return `${published ? 'port' : 'vip'}_slots_${protocol}`;
}

export const SLOT_MAPS = (['tcp', 'udp'] as const).flatMap((protocol) => [
  { name: slotMapName(false, protocol), protocol, key: `ip daddr . meta l4proto . ${protocol} dport` },
  { name: slotMapName(true, protocol), protocol, key: `meta l4proto . ${protocol} dport` },
]);

/** What a service's verdict element jumps to: a shared selection chain, or a reject chain. */
export interface SelectorSpec {
  published: boolean;
  protocol: LbProtocol;
  hash: boolean;
  snat: boolean;
  /** Number of slots (sum of weights); 0 = reject. */
  slots: number;
}

export function selectorChainName(s: SelectorSpec): string {
  return `${s.published ? 'psel' : 'sel'}_${s.protocol}_${s.hash ? 'h' : 'r'}_${s.snat ? 's' : 'n'}_${s.slots}`;
}

const SELECTOR = /^(psel|sel)_(tcp|udp)_([hr])_([sn])_(\d+)$/;

export function parseSelectorChainName(name: string): SelectorSpec | null {
  const m = SELECTOR.exec(name);
  if (m === null) return null;
  return {
    published: m[1] === 'psel',
    protocol: m[2] as LbProtocol,
    hash: m[3] === 'h',
    snat: m[4] === 's',
    slots: Number(m[5]),
  };
}

export function slotsOf(service: LbVirtualService): LbBackend[] {
  const slots: LbBackend[] = [];
  for (const backend of service.backends) for (let i = 0; i < backend.weight; i++) slots.push(backend);
  return slots;
}

export function selectorOf(service: LbVirtualService): SelectorSpec {
  return {
    published: service.address === ANY_LOCAL_ADDRESS,
    protocol: service.protocol,
    hash: service.scheduler === 'source-hash',
    snat: service.snatAddress !== null,
    slots: slotsOf(service).length,
  };
}

/** The base objects; idempotent (add + flush + re-add), so it also repairs a damaged skeleton. */
export function renderSkeleton(snatAddress: string | null): string[] {
  const lines = [
    `add table ${T}`,
    `add map ${T} vips { type ipv4_addr . inet_proto . inet_service : verdict; }`,
    `add map ${T} ports { type inet_proto . inet_service : verdict; }`,
    ...SLOT_MAPS.map(
      (m) =>
        `add map ${T} ${m.name} { typeof ${m.key} . numgen random mod 1 : ip daddr . ${m.protocol} dport; }`,
    ),
    `add set ${T} draining { type ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service; }`,
    `add chain ${T} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain ${T} output { type nat hook output priority -100; policy accept; }`,
    `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
  ];
  for (const chain of ['prerouting', 'output'])
    lines.push(
      `flush chain ${T} ${chain}`,
      `add rule ${T} ${chain} ip daddr . meta l4proto . th dport vmap @vips`,
      `add rule ${T} ${chain} fib daddr type local meta l4proto . th dport vmap @ports`,
    );
  lines.push(`flush chain ${T} postrouting`);
  if (snatAddress !== null)
    lines.push(
      `add rule ${T} postrouting meta mark & ${hex(SNAT_MARK)} == ${hex(SNAT_MARK)} snat ip to ${snatAddress}`,
    );
  return lines;
}

/** A selection chain (shared by every service with the same spec), written once per namespace. */
export function renderSelectorChain(s: SelectorSpec): string[] {
  const name = selectorChainName(s);
  const head = [`add chain ${T} ${name}`, `flush chain ${T} ${name}`];
  if (s.slots === 0)
    return [
      ...head,
      `add rule ${T} ${name} meta l4proto ${s.protocol} ${s.protocol === 'tcp' ? 'reject with tcp reset' : 'reject'}`,
    ];
  const mark = s.snat ? ` meta mark set mark | ${hex(SNAT_MARK)}` : '';
  const pick = `${s.hash ? 'jhash ip saddr' : 'numgen random'} mod ${s.slots}`;
  const port = `${s.protocol} dport`;
  const key = s.published ? `meta l4proto . ${port}` : `ip daddr . meta l4proto . ${port}`;
  const map = slotMapName(s.published, s.protocol);
  return [
    ...head,
    `add rule ${T} ${name} meta l4proto ${s.protocol}${mark} dnat ip to ${key} . ${pick} map @${map}`,
  ];
}

/** Element key prefix of a service in the slot maps, and its verdict element. */
export function keysOf(service: LbVirtualService): {
  verdictMap: string;
  key: string;
  slotMap: string;
  drainKey: string;
} {
  if (service.address === ANY_LOCAL_ADDRESS)
    return {
      verdictMap: 'ports',
      key: `${service.protocol} . ${service.port}`,
      slotMap: slotMapName(true, service.protocol),
      drainKey: `${ANY_ADDRESS_KEY} . ${service.protocol} . ${service.port}`,
    };
  const key = `${service.address} . ${service.protocol} . ${service.port}`;
  return { verdictMap: 'vips', key, slotMap: slotMapName(false, service.protocol), drainKey: key };
}

/** What a service holds in the kernel besides its verdict element (known from a dump or the last apply). */
export interface ServiceFootprint {
  slotIndexes: number[];
  /** `addr . port` of draining elements. */
  draining: string[];
}

export function footprintOf(service: LbVirtualService): ServiceFootprint {
  return {
    slotIndexes: slotsOf(service).map((_, i) => i),
    draining: service.backends.filter((b) => b.weight === 0).map((b) => `${b.address} . ${b.port}`),
  };
}

function elements(map: string, items: string[]): string[] {
  return items.length === 0 ? [] : [`${map} { ${items.join(', ')} }`];
}

/** Deletes a service's elements as they are in the kernel (`old`), then writes `service` (null = remove). */
export function renderServiceElements(
  keys: ReturnType<typeof keysOf>,
  old: { footprint: ServiceFootprint; hasVerdict: boolean },
  service: LbVirtualService | null,
): { deletes: string[]; adds: string[] } {
  const deletes = [
    ...(old.hasVerdict ? [`${T} ${keys.verdictMap} { ${keys.key} }`] : []),
    ...elements(
      `${T} ${keys.slotMap}`,
      old.footprint.slotIndexes.map((i) => `${keys.key} . ${i}`),
    ),
    ...elements(
      `${T} draining`,
      old.footprint.draining.map((d) => `${keys.drainKey} . ${d}`),
    ),
  ];
  if (service === null) return { deletes, adds: [] };
  const slots = slotsOf(service);
  const adds = [
    ...elements(
      `${T} ${keys.slotMap}`,
      slots.map((b, i) => `${keys.key} . ${i} : ${b.address} . ${b.port}`),
    ),
    ...elements(
      `${T} draining`,
      footprintOf(service).draining.map((d) => `${keys.drainKey} . ${d}`),
    ),
    `${T} ${keys.verdictMap} { ${keys.key} : goto ${selectorChainName(selectorOf(service))} }`,
  ];
  return { deletes, adds };
}
