/**
 * Acceptance of the embedded resolver (issue 8), on the network-namespace lab:
 * the real `dig` inside a task sandbox, a real `unbound` upstream on another
 * lab host, the resolver on its own lab host serving the sandbox through
 * sockets handed over from the sandbox namespace.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { EndpointState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { NET_APP, sampleState } from '../../unit/dns/fixtures.js';
import { type DnsLab, digInSandbox, dnsLabDown, dnsLabUp } from './lab.js';

const execFileAsync = promisify(execFile);
const PREFIX = 'mdd';
const ATTEMPT_TIMEOUT_MS = 500;
const MAX_ATTEMPTS = 2;
const BIG_RECORDS = 60;
const FUZZ_CLIENT = fileURLToPath(new URL('./fuzz-client.ts', import.meta.url));
const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function status(out: string): string | undefined {
  return /status: ([A-Z]+)/.exec(out)?.[1];
}

function shortLines(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith(';'))
    .sort();
}

describe('embedded DNS in a sandbox namespace (dig, unbound upstream)', { timeout: 180_000 }, () => {
  let lab: DnsLab | undefined;

  before(async () => {
    const big = Array.from({ length: BIG_RECORDS }, (_, i) => `big.example.test. 60 IN A 192.0.3.${i + 1}`);
    lab = await dnsLabUp({
      prefix: PREFIX,
      state: sampleState(),
      sandboxTaskId: 'client',
      unbound: { localData: ['www.example.test. 60 IN A 192.0.2.80', ...big] },
      attemptTimeoutMs: ATTEMPT_TIMEOUT_MS,
      maxAttempts: MAX_ATTEMPTS,
    });
  });

  after(async () => {
    await dnsLabDown(lab, PREFIX);
  });

  it('resolves web to its VIP and tasks.web to the active task IPs', async () => {
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'web'])), ['10.0.1.2']);
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'tasks.web'])), [
      '10.0.1.11',
      '10.0.1.12',
    ]);
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'web.app'])), ['10.0.1.2']);
  });

  it('answers SRV and PTR records', async () => {
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'SRV', '_http._tcp.web'])), [
      '0 0 80 web.',
    ]);
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', '-x', '10.0.1.2'])), ['web.']);
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', '-x', '10.0.1.11'])), ['web.1.t1.']);
  });

  it('answers NXDOMAIN for a service on another network and NOERROR/empty for AAAA of a cluster name', async () => {
    assert.equal(status(await digInSandbox(lab!, ['pg'])), 'NXDOMAIN');
    const aaaa = await digInSandbox(lab!, ['AAAA', 'WEB.']);
    assert.equal(status(aaaa), 'NOERROR');
    assert.match(aaaa, /ANSWER: 0/);
  });

  it('forwards other names to the upstream, over TCP when the answer is truncated', async () => {
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'www.example.test'])), ['192.0.2.80']);
    const big = await digInSandbox(lab!, ['+noedns', 'big.example.test']);
    assert.equal(status(big), 'NOERROR');
    assert.match(big, new RegExp(`ANSWER: ${BIG_RECORDS}`));
  });

  it('reflects a desired-state change (task added, drained, removed) in the next query', async () => {
    const state = sampleState(2);
    const web = state.services.find((s) => s.name === 'web')!;
    web.endpoints[0]!.state = EndpointState.ENDPOINT_STATE_DRAINING;
    web.endpoints.splice(1, 1);
    web.endpoints.push({
      taskId: 'id-web.4.t4',
      taskName: 'web.4.t4',
      nodeId: 'node1',
      networkId: NET_APP,
      address: '10.0.1.14',
      state: EndpointState.ENDPOINT_STATE_ACTIVE,
    });
    await lab!.resolver.update(state);
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'tasks.web'])), ['10.0.1.14']);
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'web.4.t4'])), ['10.0.1.14']);
    await lab!.resolver.update(sampleState(3));
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'tasks.web'])), [
      '10.0.1.11',
      '10.0.1.12',
    ]);
  });

  it('stops serving a sandbox removed from the desired state, and serves it again once it is back', async () => {
    const without = sampleState(4);
    without.sandboxes = without.sandboxes.filter((s) => s.taskId !== 'client');
    const removed = (await lab!.resolver.update(without)) as { detached: string[] };
    assert.deepEqual(removed.detached, ['client']);
    const gone = await digInSandbox(lab!, ['web']).catch((err: unknown) => String(err));
    assert.doesNotMatch(gone, /status: NOERROR/);
    const back = (await lab!.resolver.update(sampleState(5))) as { attached: string[] };
    assert.deepEqual(back.attached, ['client']);
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'web'])), ['10.0.1.2']);
  });

  it('survives 20,000 mutated UDP packets and 200 bad TCP streams with bounded memory', async () => {
    const seed = Number(process.env['SEED'] ?? Date.now() % 1_000_000);
    // Warm up the code paths first so JIT and caches do not count as growth.
    await runFuzz(seed + 1, 2000, 20);
    const before1 = await lab!.resolver.memory();
    const summary = await runFuzz(seed, 20_000, 200).catch((err: unknown) => {
      console.error(`fuzz failed; replay with SEED=${seed}`);
      throw err;
    });
    const after1 = await lab!.resolver.memory();
    const growthBytes = after1.heapUsed - before1.heapUsed;
    console.log(`fuzz seed ${seed}: ${summary.trim()}; heap growth ${(growthBytes / 1e6).toFixed(1)} MB`);
    assert.ok(growthBytes < 24e6, `heap grew by ${growthBytes} bytes (seed ${seed})`);
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'web'])), ['10.0.1.2']);
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'www.example.test'])), ['192.0.2.80']);
    const tcp = await digInSandbox(lab!, ['+tcp', '+short', 'tasks.web']);
    assert.deepEqual(shortLines(tcp), ['10.0.1.11', '10.0.1.12']);
  });

  it('answers SERVFAIL within the forwarding bound once the upstream is stopped', async () => {
    await lab!.unbound.stop();
    const startMs = Date.now();
    const out = await digInSandbox(lab!, ['www.example.test']);
    const elapsedMs = Date.now() - startMs;
    assert.equal(status(out), 'SERVFAIL');
    assert.ok(elapsedMs < ATTEMPT_TIMEOUT_MS * MAX_ATTEMPTS + 1500, `took ${elapsedMs} ms`);
    // Cluster names do not depend on the upstream.
    assert.deepEqual(shortLines(await digInSandbox(lab!, ['+short', 'web'])), ['10.0.1.2']);
  });

  async function runFuzz(seed: number, udp: number, tcp: number): Promise<string> {
    const { stdout } = await execFileAsync(
      'ip',
      [
        'netns',
        'exec',
        lab!.sandboxNetns,
        process.execPath,
        '--import',
        'tsx',
        FUZZ_CLIENT,
        '--seed',
        String(seed),
        '--udp',
        String(udp),
        '--tcp',
        String(tcp),
      ],
      { cwd: PROJECT_ROOT, timeout: 120_000 },
    );
    return stdout;
  }
});
