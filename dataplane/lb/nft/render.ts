import { ANY_LOCAL_ADDRESS, type LbBackend, type LbProtocol, type LbVirtualService } from '../types.js';

/**
 * Pure rendering of nft script text for one namespace's `ip meshd` table.
 * Layout (see the comment at the top of backend.ts and dataplane/lb/README.md).
 */

export const TABLE = 'meshd';
export const SNAT_MARK = 0x00200000;
/** Marks the rule that lists draining backends (never matches traffic; read back by dump). */
export const DRAINING_COMMENT = 'meshd draining';

export function chainName(protocol: LbProtocol, address: string, port: number): string {
  const addressPart = address === ANY_LOCAL_ADDRESS ? 'any' : address.replaceAll('.', '_');
  return `vs_${protocol}_${addressPart}_${port}`;
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

/** The base objects; idempotent (add + flush + re-add), so it also repairs a damaged skeleton. */
export function renderSkeleton(snatAddress: string | null): string[] {
  const t = `ip ${TABLE}`;
  const lines = [
    `add table ${t}`,
    `add map ${t} vips { type ipv4_addr . inet_proto . inet_service : verdict; }`,
    `add map ${t} ports { type inet_proto . inet_service : verdict; }`,
    `add chain ${t} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain ${t} output { type nat hook output priority -100; policy accept; }`,
    `add chain ${t} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
  ];
  for (const chain of ['prerouting', 'output'])
    lines.push(
      `flush chain ${t} ${chain}`,
      `add rule ${t} ${chain} ip daddr . meta l4proto . th dport vmap @vips`,
      `add rule ${t} ${chain} fib daddr type local meta l4proto . th dport vmap @ports`,
    );
  lines.push(`flush chain ${t} postrouting`);
  if (snatAddress !== null)
    lines.push(
      `add rule ${t} postrouting meta mark & ${hex(SNAT_MARK)} == ${hex(SNAT_MARK)} snat ip to ${snatAddress}`,
    );
  return lines;
}

/** Map + key of the element that sends a virtual service's traffic to its chain. */
export function elementOf(service: LbVirtualService): { map: 'vips' | 'ports'; key: string } {
  if (service.address === ANY_LOCAL_ADDRESS)
    return { map: 'ports', key: `${service.protocol} . ${service.port}` };
  return { map: 'vips', key: `${service.address} . ${service.protocol} . ${service.port}` };
}

/** The selection chain's rules: DNAT over active backends (weight = slots), or reject when none. */
export function renderServiceRules(service: LbVirtualService): string[] {
  const chain = chainName(service.protocol, service.address, service.port);
  const prefix = `add rule ip ${TABLE} ${chain} meta l4proto ${service.protocol}`;
  const slots: LbBackend[] = [];
  for (const backend of service.backends) for (let i = 0; i < backend.weight; i++) slots.push(backend);
  const rules: string[] = [];
  if (slots.length === 0) {
    rules.push(`${prefix} ${service.protocol === 'tcp' ? 'reject with tcp reset' : 'reject'}`);
  } else {
    const mark = service.snatAddress === null ? '' : ` meta mark set mark | ${hex(SNAT_MARK)}`;
    const selector =
      service.scheduler === 'source-hash'
        ? `jhash ip saddr mod ${slots.length}`
        : `numgen random mod ${slots.length}`;
    const entries = slots.map((b, i) => `${i} : ${b.address} . ${b.port}`).join(', ');
    rules.push(`${prefix}${mark} dnat ip to ${selector} map { ${entries} }`);
  }
  const draining = service.backends.filter((b) => b.weight === 0);
  if (draining.length > 0) {
    const list = draining.map((b) => `${b.address} . ${b.port}`).join(', ');
    rules.push(`${prefix} ip daddr . th dport { ${list} } comment "${DRAINING_COMMENT}"`);
  }
  return rules;
}

export function renderAddService(service: LbVirtualService): string[] {
  const chain = chainName(service.protocol, service.address, service.port);
  const { map, key } = elementOf(service);
  return [
    `add chain ip ${TABLE} ${chain}`,
    `flush chain ip ${TABLE} ${chain}`,
    ...renderServiceRules(service),
    `add element ip ${TABLE} ${map} { ${key} : goto ${chain} }`,
  ];
}

export function renderUpdateService(service: LbVirtualService): string[] {
  const chain = chainName(service.protocol, service.address, service.port);
  return [`flush chain ip ${TABLE} ${chain}`, ...renderServiceRules(service)];
}

export function renderRemoveService(service: LbVirtualService): string[] {
  const chain = chainName(service.protocol, service.address, service.port);
  const { map, key } = elementOf(service);
  return [`delete element ip ${TABLE} ${map} { ${key} }`, `delete chain ip ${TABLE} ${chain}`];
}
