/**
 * Service discovery end to end on the data-plane team's 3-host mesh lab
 * (test/integration/dataplane/mesh-lab.ts: overlay, nftables LB, tasks t1 on
 * h1 and t2 on h2 serving HTTP, client sandbox c3 on h3). The resolver runs
 * on h3 as the daemon would (EmbeddedDns with h3's desired state); from c3,
 * `web` resolves to the VIP and the VIP answers HTTP through the load balancer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execInNetns } from '../../../dataplane/netns/netns.js';
import { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { httpGet, MeshLab, TASK_PORT, WEB_VIP } from '../dataplane/mesh-lab.js';
import { ResolverHost } from './lab.js';

const PREFIX = 'mddm';
const CLIENT_HOST = 3;

function dig(netns: string, args: string[]): Promise<string> {
  return execInNetns(netns, ['dig', '@127.0.0.11', '+time=3', '+tries=1', '+short', ...args], {
    timeoutMs: 15_000,
  });
}

function lines(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith(';'))
    .sort();
}

describe('embedded DNS on the 3-host mesh lab (name → VIP → load balancer → task)', {
  timeout: 240_000,
}, () => {
  let mesh: MeshLab | undefined;
  let resolver: ResolverHost | undefined;
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}-dns-`));

  before(async () => {
    mesh = await MeshLab.up(PREFIX);
    await mesh.applyAll();
    const host = mesh.host(CLIENT_HOST);
    const resolvConf = join(dir, 'resolv.conf');
    writeFileSync(resolvConf, 'nameserver 127.0.0.53\n');
    resolver = await ResolverHost.start(host.netns);
    const started = (await resolver.request({
      op: 'start',
      resolvConfPath: resolvConf,
      hostPrefix: host.netnsPrefix,
      state: DesiredState.toJSON(mesh.stateFor(CLIENT_HOST)),
      attemptTimeoutMs: 500,
      maxAttempts: 1,
    })) as { attached: string[] };
    assert.deepEqual(started.attached, ['c3']);
  });

  after(async () => {
    await resolver?.stop().catch(() => {});
    await mesh?.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('resolves web to the VIP and tasks.web to both tasks, from the client sandbox', async () => {
    const c3 = mesh!.sandboxNetns('c3');
    assert.deepEqual(lines(await dig(c3, ['web'])), [WEB_VIP]);
    assert.deepEqual(lines(await dig(c3, ['tasks.web'])), ['10.10.0.11', '10.10.0.12']);
  });

  it('serves the system resolver of the sandbox (its resolv.conf points at 127.0.0.11)', async () => {
    const c3 = mesh!.sandboxNetns('c3');
    const out = await execInNetns(c3, ['getent', 'ahostsv4', 'web'], { timeoutMs: 15_000 });
    assert.match(out, new RegExp(`^${WEB_VIP.replaceAll('.', '\\.')}\\s`, 'm'));
  });

  it('reaches a task through the address the name resolved to', async () => {
    const c3 = mesh!.sandboxNetns('c3');
    const [vip] = lines(await dig(c3, ['web']));
    const reply = await httpGet(c3, `http://${vip}:${TASK_PORT}/`);
    assert.equal(reply?.status, 200);
    assert.match(reply?.body ?? '', /t[12]/);
  });
});
