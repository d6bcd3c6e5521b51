/**
 * The resolver as a lab "host" runs it: started with
 * `ip netns exec HOST node --expose-gc --import tsx resolver-host.ts`, so its
 * upstream sockets live in the host namespace, and driven over IPC by the test
 * or benchmark: start (resolv.conf + sandboxes), update (desired state),
 * memory, metrics. Sandbox sockets come from the netns helper handoff.
 */
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { upstreamsFromResolvConf } from '../../../dataplane/dns/resolvconf.js';
import { openSandboxDnsSockets } from '../../../dataplane/dns/sandbox-sockets.js';
import { DnsServer } from '../../../dataplane/dns/server.js';
import { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { errorMessage } from '../../../src/common/errors.js';

export type HostRequest =
  | {
      id: number;
      op: 'start';
      resolvConfPath: string;
      sandboxes: { taskId: string; netns: string }[];
      state: unknown;
      attemptTimeoutMs: number;
      maxAttempts: number;
    }
  | { id: number; op: 'update'; state: unknown }
  | { id: number; op: 'memory' }
  | { id: number; op: 'metrics' };

export type HostReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

let server: DnsServer | undefined;
const registry = new Registry();

async function handle(req: HostRequest): Promise<unknown> {
  switch (req.op) {
    case 'start': {
      const { upstreams, skipped } = upstreamsFromResolvConf(readFileSync(req.resolvConfPath, 'utf8'));
      server = new DnsServer({
        registry,
        upstreams,
        forwarderLimits: { attemptTimeoutMs: req.attemptTimeoutMs, maxAttempts: req.maxAttempts },
      });
      server.update(DesiredState.fromJSON(req.state));
      for (const sb of req.sandboxes) {
        server.attach(sb.taskId, await openSandboxDnsSockets(sb.netns));
      }
      return { upstreams, skipped };
    }
    case 'update':
      server?.update(DesiredState.fromJSON(req.state));
      return { version: server?.stateVersion };
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
  server?.close();
  process.exit(0);
});
process.send?.({ id: 0, ok: true, result: 'ready' } satisfies HostReply);
