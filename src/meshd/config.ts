import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { type LbBackendChoice, parseLbBackendChoice } from '../../dataplane/lb/ipvs/select.js';
import { ValidationError } from '../common/errors.js';
import { splitHostPort } from '../common/host-port.js';

/** Everything meshd init/join/run needs to know about this host. */
export interface DaemonConfig {
  stateDir: string;
  /** mTLS listener for the CA and the dispatcher (host:port). */
  listenAddress: string;
  /** mTLS listener for Raft between managers (host:port). */
  raftListenAddress: string;
  /** host:port other nodes use to reach listenAddress. */
  advertiseAddress: string;
  dataPathPort: number;
  /** `auto`: IPVS when the kernel has it (after trying to load the module), nftables otherwise. */
  lbBackend: LbBackendChoice;
  socketPath: string;
  socketGroup: string;
  hostname: string;
  /** `kernel`: overlay, sandboxes and LB programmed; `none`: tasks run in the host namespace, nothing programmed (tests, hosts without root). */
  dataPlane: 'kernel' | 'none';
  /** Prefix of this host's namespaces ("md-" on a real host; lab hosts sharing a kernel set their own). */
  netnsPrefix: string;
  /** Base heartbeat period this manager's dispatcher hands to nodes; a node is down after 3 missed. */
  dispatcherHeartbeatMs: number;
}

/** Config keys as written in the YAML file and as `--flag`s (the same names). */
export const CONFIG_KEYS = {
  'state-dir': 'stateDir',
  'listen-address': 'listenAddress',
  'raft-listen-address': 'raftListenAddress',
  'advertise-address': 'advertiseAddress',
  'data-path-port': 'dataPathPort',
  'lb-backend': 'lbBackend',
  socket: 'socketPath',
  'socket-group': 'socketGroup',
  hostname: 'hostname',
  'data-plane': 'dataPlane',
  'netns-prefix': 'netnsPrefix',
  'dispatcher-heartbeat': 'dispatcherHeartbeatMs',
} as const satisfies Record<string, keyof DaemonConfig>;
type Key = keyof typeof CONFIG_KEYS;

export const DEFAULTS = {
  'state-dir': '/var/lib/meshd',
  'listen-address': '0.0.0.0:4242',
  'raft-listen-address': '0.0.0.0:4243',
  'data-path-port': '4789',
  'lb-backend': 'auto',
  socket: '/run/meshd/meshd.sock',
  'socket-group': 'meshd',
  'data-plane': 'kernel',
  // Never empty: meshd deletes undesired namespaces under its prefix (dataplane/overlay/names.ts).
  'netns-prefix': 'md-',
  // DEFAULT_HEARTBEAT_POLICY (controlplane/dispatcher/heartbeat.ts): down 4.5 s after the last beat.
  'dispatcher-heartbeat': '1500ms',
} satisfies Partial<Record<Key, string>>;

/**
 * Pure: the config from the YAML file's text (may be undefined), then flags
 * over it, then defaults. Every mistake names the key, the value and what is
 * accepted; `source` says where a value came from (file path or "flag").
 */
export function resolveConfig(opts: {
  fileText?: string | undefined;
  filePath?: string;
  flags: Partial<Record<Key, string | undefined>>;
  hostname: string;
}): DaemonConfig {
  const fromFile = parseFile(opts.fileText, opts.filePath ?? 'config file');
  const raw = (key: Key): string | undefined =>
    opts.flags[key] ?? fromFile[key] ?? (DEFAULTS as Partial<Record<Key, string>>)[key];
  const listenAddress = hostPort('listen-address', raw('listen-address') ?? '');
  const raftListenAddress = hostPort('raft-listen-address', raw('raft-listen-address') ?? '');
  const listenHost = listenAddress.slice(0, listenAddress.lastIndexOf(':'));
  let advertise = raw('advertise-address');
  if (advertise === undefined) {
    if (listenHost === '0.0.0.0' || listenHost === '::' || listenHost === '[::]')
      throw new ValidationError(
        'advertise-address',
        `advertise-address is required when listen-address is ${listenAddress}: give the address other nodes reach this one at, e.g. 192.0.2.10:4242`,
      );
    advertise = listenAddress;
  }
  const advertiseAddress = hostPort('advertise-address', advertise);
  // Other nodes reach this one's overlay (VXLAN) and routing mesh at this
  // host, and the data plane is IPv4-only; the listeners may still be IPv6.
  if (isIP(splitHostPort(advertiseAddress).host) !== 4)
    throw new ValidationError(
      'advertise-address',
      `advertise-address must be an IPv4 address and port (the overlay and routing mesh are IPv4-only; listen-address may be [::]:PORT), got "${advertise}"`,
    );
  const dataPathPort = Number(raw('data-path-port'));
  if (!(Number.isInteger(dataPathPort) && dataPathPort >= 1024 && dataPathPort <= 65535))
    throw new ValidationError(
      'data-path-port',
      `data-path-port must be 1024..65535 (VXLAN, default 4789), got "${raw('data-path-port')}"`,
    );
  const lb = parseLbBackendChoice(raw('lb-backend') ?? '', 'lb-backend');
  const stateDir = absolute('state-dir', raw('state-dir') ?? '');
  const socketPath = absolute('socket', raw('socket') ?? '');
  const socketGroup = raw('socket-group') ?? '';
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(socketGroup))
    throw new ValidationError(
      'socket-group',
      `socket-group must be a group name like meshd, got "${socketGroup}"`,
    );
  const hostname = raw('hostname') ?? opts.hostname;
  if (!/^[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?$/.test(hostname))
    throw new ValidationError('hostname', `hostname must be letters, digits, '.' or '-', got "${hostname}"`);
  const dataPlane = raw('data-plane');
  if (dataPlane !== 'kernel' && dataPlane !== 'none')
    throw new ValidationError('data-plane', `data-plane must be kernel or none, got "${dataPlane}"`);
  const netnsPrefix = raw('netns-prefix') ?? '';
  if (!/^[a-z0-9-]{0,8}$/.test(netnsPrefix))
    throw new ValidationError(
      'netns-prefix',
      `netns-prefix must be up to 8 lowercase letters, digits or '-', got "${netnsPrefix}"`,
    );
  const dispatcherHeartbeatMs = duration(
    'dispatcher-heartbeat',
    raw('dispatcher-heartbeat') ?? '',
    100,
    60_000,
  );
  return {
    dataPlane,
    netnsPrefix,
    dispatcherHeartbeatMs,
    stateDir,
    listenAddress,
    raftListenAddress,
    advertiseAddress,
    dataPathPort,
    lbBackend: lb,
    socketPath,
    socketGroup,
    hostname,
  };
}

function parseFile(text: string | undefined, path: string): Partial<Record<Key, string>> {
  if (text === undefined) return {};
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ValidationError(
      'config',
      `${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new ValidationError(
      'config',
      `${path} must be a mapping of key: value, e.g. "listen-address: 10.0.0.1:4242"`,
    );
  const out: Partial<Record<Key, string>> = {};
  for (const [key, value] of Object.entries(doc)) {
    if (!Object.hasOwn(CONFIG_KEYS, key))
      throw new ValidationError(
        key,
        `${path}: unknown key "${key}"; accepted: ${Object.keys(CONFIG_KEYS).join(', ')}`,
      );
    if (typeof value !== 'string' && typeof value !== 'number')
      throw new ValidationError(
        key,
        `${path}: ${key} must be a string or number, got ${JSON.stringify(value)}`,
      );
    out[key as Key] = String(value);
  }
  return out;
}

function hostPort(field: string, text: string): string {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[2]);
  if (m === null || !(port >= 0 && port <= 65535))
    throw new ValidationError(
      field,
      `${field} must be HOST:PORT (an IP address and a port 0..65535), got "${text}"`,
    );
  const host = m[1]!.replace(/^\[|\]$/g, '');
  if (isIP(host) === 0)
    throw new ValidationError(field, `${field} host must be an IP address, got "${host}"`);
  return `${m[1]}:${port}`;
}

/** `1500ms`, `5s` or `2.5s` within [minMs, maxMs], in milliseconds. */
function duration(field: string, text: string, minMs: number, maxMs: number): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(text.trim());
  const ms = m === null ? Number.NaN : Math.round(Number(m[1]) * (m[2] === 's' ? 1000 : 1));
  if (!(ms >= minMs && ms <= maxMs))
    throw new ValidationError(
      field,
      `${field} must be a duration like 1500ms or 5s, ${minMs}ms..${maxMs / 1000}s, got "${text}"`,
    );
  return ms;
}

function absolute(field: string, path: string): string {
  if (!path.startsWith('/'))
    throw new ValidationError(field, `${field} must be an absolute path, got "${path}"`);
  return path.replace(/\/+$/, '') || '/';
}
