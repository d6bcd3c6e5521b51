import http from 'node:http';
import net from 'node:net';
import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import { subsystemLogger } from '../../src/common/logger.js';
import type { Programmer } from '../reconciler/reconciler.js';
import { desiredLbState } from './model.js';
import type { LbHealthPort } from './types.js';

/**
 * Health ports of mode=local published ports: HTTP 200 while this node has an
 * active local endpoint of the service, 503 otherwise, so an external load
 * balancer only sends clients to nodes that will keep their source address.
 * Listeners come from a `listen` function, so the lab can open them inside a
 * host namespace (dataplane/netns socket handoff) while this process serves them.
 */
export type ListenFn = (port: number) => Promise<net.Server>;

const log = subsystemLogger('lb-health');

export const listenOnAllAddresses: ListenFn = (port) =>
  new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve(server));
  });

export function healthResponse(port: LbHealthPort | undefined): { status: number; body: string } {
  if (port === undefined) return { status: 404, body: 'no such health port\n' };
  return port.healthy
    ? { status: 200, body: `ok: service ${port.serviceId} has an active endpoint on this node\n` }
    : { status: 503, body: `unavailable: service ${port.serviceId} has no active endpoint on this node\n` };
}

export class HealthPortServer {
  private readonly listeners = new Map<number, net.Server>();
  private readonly ports = new Map<number, LbHealthPort>();
  private readonly http = http.createServer((req, res) => {
    const local = req.socket.localPort;
    const { status, body } = healthResponse(local === undefined ? undefined : this.ports.get(local));
    res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' });
    res.end(body);
  });

  constructor(private readonly listen: ListenFn = listenOnAllAddresses) {}

  current(): Map<number, LbHealthPort> {
    return new Map(this.ports);
  }

  /** Makes the served ports exactly `desired` (opens new listeners, closes gone ones). */
  async update(desired: Map<number, LbHealthPort>): Promise<number> {
    let operations = 0;
    for (const [port, listener] of this.listeners)
      if (!desired.has(port)) {
        listener.close();
        this.listeners.delete(port);
        this.ports.delete(port);
        operations++;
      }
    for (const [port, health] of desired) {
      if (!this.listeners.has(port)) {
        const listener = await this.listen(port);
        listener.on('connection', (socket: net.Socket) => this.http.emit('connection', socket));
        listener.on('error', (err) => log.warn({ port, err: err.message }, 'health listener error'));
        this.listeners.set(port, listener);
        operations++;
      }
      this.ports.set(port, { ...health });
    }
    return operations;
  }

  async close(): Promise<void> {
    await this.update(new Map());
    this.http.close();
  }
}

interface HealthChange {
  port: number;
  health: LbHealthPort | null;
}

/** The health ports as a reconciler programmer (no kernel state: the daemon's own listeners). */
export function healthProgrammer(
  server: HealthPortServer,
): Programmer<Map<number, LbHealthPort>, HealthChange> {
  return {
    name: 'lb-health-ports',
    desired: (state: DesiredState) => desiredLbState(state).healthPorts,
    dump: async () => server.current(),
    plan(desired, actual) {
      const changes: HealthChange[] = [];
      for (const port of actual.keys()) if (!desired.has(port)) changes.push({ port, health: null });
      for (const [port, health] of desired) {
        const was = actual.get(port);
        if (was?.healthy !== health.healthy || was.serviceId !== health.serviceId)
          changes.push({ port, health });
      }
      return changes;
    },
    async apply(changes) {
      const next = server.current();
      for (const c of changes) {
        if (c.health === null) next.delete(c.port);
        else next.set(c.port, c.health);
      }
      return { kernelOperations: await server.update(next) };
    },
    describe: (model) => [...model.values()],
  };
}
