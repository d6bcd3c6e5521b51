/**
 * The resolver as a lab "host" runs it: started with
 * `ip netns exec HOST node --expose-gc --import tsx resolver-host.ts`, so its
 * upstream sockets live in the host namespace, and driven over IPC by the test
 * or benchmark: start, update (desired state), memory, metrics. It runs the
 * daemon's EmbeddedDns, so sandbox sockets come from the netns helper handoff.
 */
import { Registry } from 'prom-client';
import { EmbeddedDns } from '../../../dataplane/dns/embedded.js';
import { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { errorMessage } from '../../../src/common/errors.js';

export type HostRequest =
  | {
      id: number;
      op: 'start';
      resolvConfPath: string;
      hostPrefix: string;
      state: unknown;
      attemptTimeoutMs: number;
      maxAttempts: number;
    }
  | { id: number; op: 'update'; state: unknown }
  | { id: number; op: 'memory' }
  | { id: number; op: 'metrics' };

export type HostReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

let dns: EmbeddedDns | undefined;
const registry = new Registry();

async function handle(req: HostRequest): Promise<unknown> {
  switch (req.op) {
    case 'start': {
      dns = new EmbeddedDns({
        registry,
        hostPrefix: req.hostPrefix,
        resolvConfPath: req.resolvConfPath,
        serverOptions: {
          forwarderLimits: { attemptTimeoutMs: req.attemptTimeoutMs, maxAttempts: req.maxAttempts },
        },
      });
      return dns.apply(DesiredState.fromJSON(req.state));
    }
    case 'update':
      return dns?.apply(DesiredState.fromJSON(req.state));
    case 'memory':
      (globalThis as { gc?: () => void }).gc?.();
      return process.memoryUsage();
    case 'metrics':
      return registry.metrics();
  }
}

process.on('message', (msg: HostRequest) => {
  handle(msg).then(
    (result) => process.send?.({ id: msg.id, ok: true, result } satisfies HostReply),
    (err: unknown) => process.send?.({ id: msg.id, ok: false, error: errorMessage(err) } satisfies HostReply),
  );
});
process.on('disconnect', () => {
  dns?.close();
  process.exit(0);
});
process.send?.({ id: 0, ok: true, result: 'ready' } satisfies HostReply);
