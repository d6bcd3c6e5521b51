/**
 * `host:port` text with IPv6 in brackets (`[2001:db8::1]:4242`), the form
 * gRPC targets, config files and people use. An IPv6 host joined without
 * brackets cannot be split again.
 */
import { isIP } from 'node:net';

/** `host` (an IPv4 or IPv6 address, or a name; brackets optional) and `port` as one target. */
export function joinHostPort(host: string, port: number | string): string {
  const bare = stripBrackets(host);
  return isIP(bare) === 6 ? `[${bare}]:${port}` : `${bare}:${port}`;
}

/** The host (without brackets) and the port text of `host:port`; the port is '' when there is none. */
export function splitHostPort(text: string): { host: string; port: string } {
  const bracketed = /^\[([^\]]*)\](?::(\d*))?$/.exec(text);
  if (bracketed !== null) return { host: bracketed[1]!, port: bracketed[2] ?? '' };
  // A bare IPv6 address has no port.
  if (isIP(text) === 6) return { host: text, port: '' };
  const colon = text.lastIndexOf(':');
  return colon < 0 ? { host: text, port: '' } : { host: text.slice(0, colon), port: text.slice(colon + 1) };
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
