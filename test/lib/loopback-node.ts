import { createServer } from 'node:net';
import { join } from 'node:path';
import { type DaemonConfig, resolveConfig } from '../../src/meshd/config.js';

/**
 * A meshd node for in-process tests: state and socket under `dir`, listeners on
 * loopback port 0, no data plane; `flags` override (e.g. IPv6 listeners).
 */
export function loopbackNodeConfig(
  dir: string,
  name: string,
  flags: Record<string, string> = {},
): DaemonConfig {
  return resolveConfig({
    hostname: name,
    flags: {
      'state-dir': join(dir, name),
      socket: join(dir, `${name}.sock`),
      'listen-address': '127.0.0.1:0',
      'raft-listen-address': '127.0.0.1:0',
      'socket-group': 'meshd-test-none',
      'data-plane': 'none',
      ...flags,
    },
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot take port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() =>
        typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port')),
      );
    });
  });
}
