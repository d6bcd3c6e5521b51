/**
 * Opens the resolver's sockets inside a task sandbox: UDP and TCP on
 * 127.0.0.11:53 (the address lives on the sandbox's own `lo`), through a
 * short-lived namespace helper that hands both to this process and exits
 * (dataplane/netns `openSocketsInNetns`). The descriptors stay valid here
 * after the helper is gone, so a running sandbox costs no process.
 */
import { openSocketsInNetns } from '../netns/helper.js';
import type { SandboxSockets } from './server.js';

export const RESOLVER_ADDRESS = '127.0.0.11';
export const RESOLVER_PORT = 53;

export async function openSandboxDnsSockets(netns: string): Promise<Required<SandboxSockets>> {
  const opened = await openSocketsInNetns(netns, [
    { kind: 'udp4', address: RESOLVER_ADDRESS, port: RESOLVER_PORT },
    { kind: 'tcp4', address: RESOLVER_ADDRESS, port: RESOLVER_PORT },
  ]);
  const udp = opened.find((o) => o.kind === 'udp4');
  const tcp = opened.find((o) => o.kind === 'tcp4');
  if (udp?.kind !== 'udp4' || tcp?.kind !== 'tcp4') throw new Error(`netns ${netns}: DNS sockets missing`);
  return { udp: udp.socket, tcp: tcp.server };
}
