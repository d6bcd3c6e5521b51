/**
 * Upstream resolvers from the host's resolv.conf. Loopback nameservers are
 * skipped: from a sandbox they would point back at the sandbox itself (or at
 * a host-only stub like systemd-resolved), the loop libnetwork also avoids.
 */
import { isIP } from 'node:net';

/** glibc reads at most three nameservers (MAXNS); so do we. */
export const MAX_UPSTREAMS = 3;

export interface Upstream {
  address: string;
  port: number;
  family: 4 | 6;
}

export interface ResolvConfUpstreams {
  upstreams: Upstream[];
  /** Nameserver lines that were not used, each with the reason. */
  skipped: string[];
}

function isLoopback(address: string, family: number): boolean {
  if (family === 4) return address.startsWith('127.');
  const lower = address.toLowerCase();
  return lower === '::1' || lower === '0:0:0:0:0:0:0:1' || lower.startsWith('::ffff:127.');
}

export function upstreamsFromResolvConf(text: string): ResolvConfUpstreams {
  const upstreams: Upstream[] = [];
  const skipped: string[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/[#;].*$/, '').trim();
    const [keyword, value, ...rest] = line.split(/\s+/);
    if (keyword !== 'nameserver') continue;
    if (value === undefined || rest.length > 0) {
      skipped.push(`"${rawLine.trim()}": expected "nameserver ADDRESS"`);
      continue;
    }
    // A zone index (fe80::1%eth0) names a link of the host namespace: useless from here.
    const family = isIP(value);
    if (family === 0) {
      skipped.push(`"${value}": not an IP address`);
      continue;
    }
    if (isLoopback(value, family)) {
      skipped.push(`"${value}": loopback, would loop back into the sandbox`);
      continue;
    }
    if (upstreams.length >= MAX_UPSTREAMS) {
      skipped.push(`"${value}": only the first ${MAX_UPSTREAMS} nameservers are used`);
      continue;
    }
    upstreams.push({ address: value, port: 53, family: family === 6 ? 6 : 4 });
  }
  return { upstreams, skipped };
}
