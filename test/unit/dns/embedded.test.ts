import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { EmbeddedDns } from '../../../dataplane/dns/embedded.js';
import type { SandboxSockets } from '../../../dataplane/dns/server.js';
import { RRTYPE } from '../../../dataplane/dns/wire.js';
import { sandboxNetnsName } from '../../../dataplane/overlay/names.js';
import { ManualClock } from '../../../src/common/clock.js';
import { decode, queryBytes, sampleState } from './fixtures.js';
import { bindUdp, udpExchange } from './harness.js';

// The real socket opener (namespace handoff) is exercised by test/integration/dns.
describe('dns embedded resolver: sandboxes follow the desired state', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mdd-embedded-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('attaches new sandboxes, retries failed ones after a backoff, detaches removed ones', async () => {
    const resolvConf = join(dir, 'resolv.conf');
    writeFileSync(resolvConf, 'nameserver 127.0.0.53\n');
    const ports = new Map<string, number>();
    let failNext = true;
    const opened: string[] = [];
    const clock = new ManualClock();
    const dns = new EmbeddedDns({
      clock,
      registry: new Registry(),
      hostPrefix: 'mddx-',
      resolvConfPath: resolvConf,
      openSockets: async (netns): Promise<SandboxSockets> => {
        opened.push(netns);
        if (netns === sandboxNetnsName('mddx-', 'both') && failNext) {
          failNext = false;
          throw new Error('namespace not ready');
        }
        const udp = await bindUdp();
        ports.set(netns, udp.address().port);
        return { udp };
      },
    });
    try {
      const first = await dns.apply(sampleState(1));
      assert.deepEqual(first.attached, ['client']);
      assert.deepEqual(
        first.failed.map((f) => f.taskId),
        ['both'],
      );
      const reply = decode(
        await udpExchange(ports.get(sandboxNetnsName('mddx-', 'client'))!, queryBytes('web', RRTYPE.A)),
      );
      assert.equal(reply.answers[0]?.address, '10.0.1.2');

      // No new state arrives: the failed sandbox is retried after the backoff.
      assert.equal(clock.pendingTimers(), 1);
      clock.advance(500);
      for (let i = 0; i < 100 && opened.length < 3; i++) await new Promise((r) => setTimeout(r, 5));
      await dns.apply(sampleState(2));
      assert.deepEqual(opened, [
        sandboxNetnsName('mddx-', 'client'),
        sandboxNetnsName('mddx-', 'both'),
        sandboxNetnsName('mddx-', 'both'),
      ]);
      assert.equal(clock.pendingTimers(), 0, 'nothing left to retry');

      const state = sampleState(3);
      state.sandboxes = state.sandboxes.filter((s) => s.taskId !== 'client');
      const third = await dns.apply(state);
      assert.deepEqual(third.detached, ['client']);
      assert.deepEqual(third.attached, []);
      assert.equal(opened.length, 3);
    } finally {
      dns.close();
    }
  });
});
