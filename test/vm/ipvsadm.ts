/**
 * Parsers for `ipvsadm -Ln` and its `--stats --exact`, `--thresholds`,
 * `--persistent-conn` variants and `-L --timeout`: the independent reading of
 * kernel state that VM tests compare the netlink decoder against.
 */

export interface ParsedService {
  /** "tcp 10.1.0.1:80" or "fwmark 7", the same text as serviceKeyText(). */
  key: string;
  scheduler: string;
  schedFlags: string[];
  persistenceS: number;
  mask: string | null;
  onePacket: boolean;
  pe: string;
  /** Numeric columns of the service line in stats mode. */
  numbers: number[];
  destinations: ParsedDestination[];
}

export interface ParsedDestination {
  /** "10.77.0.11:8080" */
  address: string;
  /** Forward column (-Ln only): Masq, Local, Tunnel, Route. */
  forward: string | null;
  /** The remaining numeric columns, in the order ipvsadm prints them. */
  numbers: number[];
}

const SERVICE_LINE = /^(TCP|UDP|SCTP|FWM)\s+(\S+)\s*(.*)$/;
const DEST_LINE = /^\s+->\s+(\S+)\s+(.*)$/;

function serviceKey(proto: string, where: string): string {
  return proto === 'FWM' ? `fwmark ${where}` : `${proto.toLowerCase()} ${where}`;
}

/** Parses any of the list formats; `statsMode` says the service line carries numbers, not a scheduler. */
export function parseIpvsadmList(text: string, statsMode = false): ParsedService[] {
  const services: ParsedService[] = [];
  for (const line of text.split('\n')) {
    const svc = SERVICE_LINE.exec(line);
    if (svc !== null) {
      const [, proto = '', where = '', rest = ''] = svc;
      const tokens = rest.trim().split(/\s+/).filter(Boolean);
      const parsed: ParsedService = {
        key: serviceKey(proto, where),
        scheduler: '',
        schedFlags: [],
        persistenceS: 0,
        mask: null,
        onePacket: false,
        pe: '',
        numbers: [],
        destinations: [],
      };
      if (statsMode) {
        parsed.numbers = tokens.map(Number);
      } else {
        parsed.scheduler = tokens.shift() ?? '';
        while (tokens.length > 0) {
          const t = tokens.shift() ?? '';
          if (t.startsWith('(')) parsed.schedFlags = t.replace(/[()]/g, '').split(',');
          else if (t === 'persistent') parsed.persistenceS = Number(tokens.shift());
          else if (t === 'mask') parsed.mask = tokens.shift() ?? null;
          else if (t === 'ops') parsed.onePacket = true;
          else if (t === 'pe') parsed.pe = tokens.shift() ?? '';
        }
      }
      services.push(parsed);
      continue;
    }
    const dest = DEST_LINE.exec(line);
    const current = services[services.length - 1];
    if (dest === null || current === undefined || dest[1] === 'RemoteAddress:Port') continue;
    const tokens = (dest[2] ?? '').trim().split(/\s+/).filter(Boolean);
    const forward =
      tokens[0] !== undefined && /^[A-Za-z]+$/.test(tokens[0]) ? (tokens.shift() ?? null) : null;
    current.destinations.push({ address: dest[1] ?? '', forward, numbers: tokens.map(Number) });
  }
  return services;
}

export function parseTimeouts(text: string): { tcpS: number; tcpFinS: number; udpS: number } {
  const m = /Timeout \(tcp tcpfin udp\): (\d+) (\d+) (\d+)/.exec(text);
  if (m === null) throw new Error(`no timeout line in: ${text}`);
  return { tcpS: Number(m[1]), tcpFinS: Number(m[2]), udpS: Number(m[3]) };
}

export function maskText(netmask: number): string {
  return [24, 16, 8, 0].map((shift) => (netmask >>> shift) & 0xff).join('.');
}

export const FORWARD_COLUMN: Record<string, string> = {
  masq: 'Masq',
  local: 'Local',
  tunnel: 'Tunnel',
  route: 'Route',
  bypass: 'Bypass',
};

export function schedFlagNames(
  scheduler: string,
  flags: { flag1: boolean; flag2: boolean; flag3: boolean },
): string[] {
  const names =
    scheduler === 'sh' || scheduler === 'mh'
      ? [`${scheduler}-fallback`, `${scheduler}-port`, 'flag-3']
      : ['flag-1', 'flag-2', 'flag-3'];
  return names.filter((_, i) => [flags.flag1, flags.flag2, flags.flag3][i]);
}
