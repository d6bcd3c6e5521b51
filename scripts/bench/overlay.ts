/**
 * Overlay programming through dataplane/overlay (typed rtnetlink in the
 * network namespace's helper): N remote endpoints (static FDB + neighbour on
 * the vxlan) from scratch, a re-apply (must be 0 changes), one endpoint moved
 * to another VTEP, and a resync's kernel read. Reference, same run: the same
 * N entries written by `bridge -batch` + `ip -batch` into an identical network
 * (both start from an existing network with no entries).
 *
 *   npm run bench -- overlay [--sizes 1000,5000] [--json]     (root; lab prefix `mdkb`)
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NetnsHelper } from '../../dataplane/netns/helper.js';
import { helperHostAccess } from '../../dataplane/netns/host.js';
import { NetnsHelperPool } from '../../dataplane/netns/pool.js';
import { macFromIpv4, networkNetnsName } from '../../dataplane/overlay/names.js';
import { overlayProgrammer } from '../../dataplane/overlay/programmer.js';
import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import { labDown, labUp } from '../lab/lab.js';
import type { Benchmark } from './types.js';

const execFileAsync = promisify(execFile);
const PREFIX = 'mdkb';

function addressOf(i: number): string {
  return `10.${128 + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}`;
}

function stateWith(
  n: number,
  hostAddress: string,
  networkId: string,
  vni: number,
  movedVtep = false,
): DesiredState {
  const remoteEndpoints = [];
  for (let i = 1; i <= n; i++) {
    const address = addressOf(i);
    const vtep = movedVtep && i === 1 ? '10.99.0.14' : i % 2 === 0 ? '10.99.0.12' : '10.99.0.13';
    remoteEndpoints.push({ networkId, address, mac: macFromIpv4(address), vtep, taskId: `t${i}` });
  }
  return {
    version: 1,
    node: { id: 'n1', underlayAddress: hostAddress, dataPathPort: 0, underlayMtu: 1500 },
    networks: [
      {
        id: networkId,
        name: networkId,
        vni,
        subnet: '10.128.0.0/9',
        gateway: '10.128.0.1',
        mtu: 0,
        lbAddress: '10.128.0.2',
        peers: [],
        ingress: false,
      },
    ],
    sandboxes: [],
    remoteEndpoints,
    services: [],
    dns: undefined,
  };
}

async function batch(netns: string, tool: 'ip' | 'bridge', lines: string[]): Promise<void> {
  const run = execFileAsync(tool, ['-n', netns, '-batch', '-'], {
    timeout: 600_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  run.child.stdin?.end(`${lines.join('\n')}\n`);
  await run;
}

const benchmark: Benchmark = {
  description: 'overlay FDB/neighbour programming: from scratch, no-op, one change, resync read',
  async run(ctx) {
    const sizesFlag = ctx.flags.get('sizes');
    const sizes = (typeof sizesFlag === 'string' ? sizesFlag : '1000,5000').split(',').map(Number);
    const lab = await labUp({ prefix: PREFIX, hosts: 1 });
    const host = lab.hosts[0]!;
    const hostHelper = await NetnsHelper.start(host.netns);
    const helpers = new NetnsHelperPool();
    const overlay = overlayProgrammer({
      hostPrefix: host.netnsPrefix,
      host: helperHostAccess(hostHelper),
      helpers,
    });
    const sync = async (state: DesiredState) => {
      const t0 = performance.now();
      const changes = overlay.plan(overlay.desired(state), await overlay.dump());
      const readMs = performance.now() - t0;
      const { kernelOperations } = await overlay.apply(changes);
      return { ms: performance.now() - t0, readMs, changes: changes.length, kernelOperations };
    };
    try {
      for (const n of sizes) {
        // Reference network: built by the programmer with no entries, then filled by the tools.
        const refState = stateWith(0, host.address, `ref${n}`, 5000 + n);
        await sync(refState);
        const refNs = networkNetnsName(host.netnsPrefix, `ref${n}`);
        const entries = stateWith(n, host.address, 'x', 1).remoteEndpoints;
        const t0 = performance.now();
        await batch(
          refNs,
          'bridge',
          entries.map((e) => `fdb replace ${e.mac} dev vx0 dst ${e.vtep} self permanent`),
        );
        await batch(
          refNs,
          'ip',
          entries.map((e) => `neigh replace ${e.address} lladdr ${e.mac} dev vx0 nud permanent`),
        );
        const refMs = performance.now() - t0;
        await sync(stateWith(0, host.address, 'none', 4));

        // Same footing as the reference: the network exists, the entries do not.
        await sync(stateWith(0, host.address, `net${n}`, 6000 + n));
        const scratch = await sync(stateWith(n, host.address, `net${n}`, 6000 + n));
        const again = await sync(stateWith(n, host.address, `net${n}`, 6000 + n));
        const one = await sync(stateWith(n, host.address, `net${n}`, 6000 + n, true));
        ctx.report({
          metric: 'all entries, network existing',
          value: Math.round(scratch.ms),
          unit: 'ms',
          endpoints: n,
          kernelOps: scratch.kernelOperations,
        });
        ctx.report({
          metric: 'reference ip/bridge -batch',
          value: Math.round(refMs),
          unit: 'ms',
          endpoints: n,
        });
        ctx.report({
          metric: 'entries / reference',
          value: +(scratch.ms / refMs).toFixed(2),
          unit: 'ratio',
          endpoints: n,
        });
        ctx.report({
          metric: 're-apply (kernel read + plan)',
          value: Math.round(again.ms),
          unit: 'ms',
          endpoints: n,
          changes: again.changes,
        });
        ctx.report({
          metric: 'one endpoint moved',
          value: Math.round(one.ms - one.readMs),
          unit: 'ms (apply)',
          endpoints: n,
          kernelOps: one.kernelOperations,
          readMs: Math.round(one.readMs),
        });
        await sync(stateWith(0, host.address, 'none', 4));
        ctx.log(`done ${n}`);
      }
    } finally {
      await helpers.stopAll();
      await hostHelper.stop();
      await labDown(PREFIX);
    }
  },
};

export default benchmark;
