/**
 * Opens the resolver's sockets inside a task sandbox: UDP and TCP on
 * 127.0.0.11:53 (the address lives on the sandbox's own `lo`), through a
 * short-lived namespace helper that hands both to this process and exits.
 * The descriptors stay valid in the daemon after the helper is gone, so the
 * sandbox costs no process while it runs (see dataplane/netns/README.md).
 */
import { NetnsHelper } from '../netns/helper.js';
import type { SandboxSockets } from './server.js';

export const RESOLVER_ADDRESS = '127.0.0.11';
export const RESOLVER_PORT = 53;

export async function openSandboxDnsSockets(netns: string): Promise<Required<SandboxSockets>> {
  const helper = await NetnsHelper.start(netns);
  try {
    const { socket: udp } = await helper.openUdpSocket(RESOLVER_ADDRESS, RESOLVER_PORT);
    try {
      const { server: tcp } = await helper.openTcpServer(RESOLVER_ADDRESS, RESOLVER_PORT);
      return { udp, tcp };
    } catch (err) {
      udp.close();
      throw err;
    }
  } finally {
    await helper.stop();
  }
}
