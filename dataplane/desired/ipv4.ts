/** IPv4 text helpers for validation and planning. Addresses are unsigned 32-bit numbers. */

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Parses a dotted quad; returns null when `text` is not one. */
export function parseIpv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!OCTET.test(part)) return null;
    value = value * 256 + Number(part);
  }
  return value;
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

export interface Ipv4Cidr {
  /** The network address (host bits zero). */
  network: number;
  prefixLength: number;
}

/** Parses "a.b.c.d/n" with host bits zero; returns null otherwise. */
export function parseCidr(text: string): Ipv4Cidr | null {
  const slash = text.indexOf('/');
  if (slash < 0) return null;
  const address = parseIpv4(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (address === null || !/^\d{1,2}$/.test(lengthText)) return null;
  const prefixLength = Number(lengthText);
  if (prefixLength > 32) return null;
  if ((address & hostMask(prefixLength)) >>> 0 !== 0) return null;
  return { network: address, prefixLength };
}

function hostMask(prefixLength: number): number {
  return prefixLength === 0 ? 0xffffffff : (2 ** (32 - prefixLength) - 1) >>> 0;
}

export function cidrContains(cidr: Ipv4Cidr, address: number): boolean {
  return (address & ~hostMask(cidr.prefixLength)) >>> 0 === cidr.network;
}

export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  const shorter = a.prefixLength <= b.prefixLength ? a : b;
  const longer = shorter === a ? b : a;
  return cidrContains(shorter, longer.network);
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function isMac(text: string): boolean {
  return MAC.test(text);
}
