import { ValidationError } from '../../src/common/errors.js';

/** An IPv4 prefix as integers: `base` is the network address. */
export interface Prefix {
  base: number;
  length: number;
}

export function parseIpv4(text: string, field: string): number {
  const parts = text.split('.');
  const octets = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : Number.NaN));
  if (octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255)))
    throw new ValidationError(field, `${field} must be an IPv4 address like 10.0.0.1, got "${text}"`);
  return ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

export function parsePrefix(text: string, field: string): Prefix {
  const [addr, len, extra] = text.split('/');
  const length = Number(len);
  if (addr === undefined || extra !== undefined || !/^\d{1,2}$/.test(len ?? '') || length > 32)
    throw new ValidationError(field, `${field} must be an IPv4 CIDR like 10.0.0.0/16, got "${text}"`);
  const ip = parseIpv4(addr, field);
  const base = (ip & maskOf(length)) >>> 0;
  if (base !== ip)
    throw new ValidationError(
      field,
      `${field} "${text}" has host bits set; did you mean ${formatPrefix({ base, length })}?`,
    );
  return { base, length };
}

export function formatPrefix(p: Prefix): string {
  return `${formatIpv4(p.base)}/${p.length}`;
}

export function maskOf(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

export function sizeOf(p: Prefix): number {
  return 2 ** (32 - p.length);
}

export function overlaps(a: Prefix, b: Prefix): boolean {
  const length = Math.min(a.length, b.length);
  const mask = maskOf(length);
  return (a.base & mask) >>> 0 === (b.base & mask) >>> 0;
}

export function contains(p: Prefix, ip: number): boolean {
  return (ip & maskOf(p.length)) >>> 0 === p.base;
}

/** A locally administered MAC derived from the IPv4 address, as Docker does (02:42:a.b.c.d). */
export function macForIpv4(ip: number): string {
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return ['02', '42', hex(ip >>> 24), hex((ip >>> 16) & 255), hex((ip >>> 8) & 255), hex(ip & 255)].join(':');
}

/**
 * Host addresses of one subnet: the network and broadcast addresses and the
 * gateway are never handed out. Lowest free address first.
 */
export class AddressSpace {
  private readonly used = new Set<number>();
  private cursor: number;
  readonly first: number;
  readonly last: number;

  constructor(readonly prefix: Prefix) {
    const size = sizeOf(prefix);
    // /31 and /32 have no room for a gateway plus hosts; the API refuses them.
    this.first = prefix.base + 1;
    this.last = prefix.base + size - 2;
    this.cursor = this.first;
  }

  get gateway(): number {
    return this.first;
  }

  /** Marks an address as taken; false when it is outside the subnet or taken already. */
  reserve(ip: number): boolean {
    if (ip < this.first || ip > this.last || this.used.has(ip)) return false;
    this.used.add(ip);
    return true;
  }

  release(ip: number): void {
    this.used.delete(ip);
    if (ip < this.cursor) this.cursor = ip;
  }

  /** The lowest free host address, or undefined when the subnet is full. */
  allocate(): number | undefined {
    for (let ip = this.cursor; ip <= this.last; ip++) {
      if (this.used.has(ip)) continue;
      this.used.add(ip);
      this.cursor = ip + 1;
      return ip;
    }
    return undefined;
  }

  get freeCount(): number {
    return Math.max(0, this.last - this.first + 1 - this.used.size);
  }
}
