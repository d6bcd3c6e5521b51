// Runs inside a lab VM, bundled whole by the host (test/vm/helpers.ts bundleProgram):
// node starts in seconds under emulation, so each mode does all its work in one process.
//   node guest.mjs publish JSON                published ports on this VM, IPVS and nftables side by side
//   node guest.mjs program BACKEND SIZE N [dump]  programming times: SIZE services, N one-endpoint changes
// Results are one JSON line on stdout, last.
import { execFileSync } from 'node:child_process';
import { createIpvsLoadBalancer } from '../../../dataplane/lb/ipvs/create.js';
import { NftLoadBalancer } from '../../../dataplane/lb/nft/backend.js';
import { nftToolExecutor } from '../../../dataplane/lb/nft/executor.js';
import {
  ANY_LOCAL_ADDRESS,
  emptyLbState,
  type LbScope,
  type LbState,
  type LoadBalancer,
  virtualServiceKey,
} from '../../../dataplane/lb/types.js';
import { IpvsClient } from '../../../dataplane/netlink/ipvs/client.js';
import { benchServices, oneEndpointChange } from './services.js';

export type BackendName = 'ipvs' | 'nftables';

export interface PublishSpec {
  snatAddress: string;
  /** One published port per backend for each target port of the tasks. */
  ports: { ipvs: number; nftables: number; target: number }[];
  tasks: { address: string; weight: number }[];
}

export interface ProgrammingResult {
  backend: BackendName;
  services: number;
  freshMs: number;
  freshOps: number;
  changeMs: number[];
  changeOps: number;
  /** -1 when the dump was not asked for. */
  dumpMs: number;
  dumpedServices: number;
  /** What the kernel holds after the fresh apply (IPVS services, or nft verdict elements). */
  kernelServices: number;
  /** VIP addresses on the IPVS backend's dummy link (IPVS only; -1 for nftables). */
  vipAddresses: number;
}

const sh = (cmd: string): string => execFileSync('bash', ['-c', cmd], { encoding: 'utf8' });

function makeBackend(name: BackendName, scopes: LbScope[]): { lb: LoadBalancer; close(): void } {
  const options = { resolveScope: () => null, listScopes: () => scopes };
  if (name === 'ipvs') return createIpvsLoadBalancer(options);
  return { lb: new NftLoadBalancer({ ...options, executor: nftToolExecutor }), close() {} };
}

/** Removes everything either backend left in this VM's namespace. */
async function cleanKernel(): Promise<void> {
  const ipvs = await IpvsClient.open();
  try {
    await ipvs.flush();
  } finally {
    ipvs.close();
  }
  sh(
    'nft delete table ip meshd 2>/dev/null; nft delete table ip meshd_ipvs 2>/dev/null; ip link del mdipvs0 2>/dev/null; true',
  );
}

async function publish(spec: PublishSpec): Promise<unknown> {
  const host: LbScope = { kind: 'host' };
  const result: Record<string, number | string> = {};
  for (const backend of ['ipvs', 'nftables'] as const) {
    const desired: LbState = emptyLbState();
    for (const p of spec.ports) {
      const port = p[backend];
      const key = virtualServiceKey(host, 'tcp', ANY_LOCAL_ADDRESS, port);
      desired.services.set(key, {
        key,
        scope: host,
        protocol: 'tcp',
        address: ANY_LOCAL_ADDRESS,
        port,
        scheduler: 'random',
        snatAddress: spec.snatAddress,
        backends: spec.tasks.map((t) => ({ address: t.address, port: p.target, weight: t.weight })),
      });
    }
    const { lb, close } = makeBackend(backend, [host]);
    try {
      result[`${backend}Ops`] = (await lb.apply(lb.plan(desired, await lb.dump()))).kernelOperations;
    } finally {
      close();
    }
  }
  result.ipvsadm = sh('ipvsadm -Ln');
  result.nft = sh('nft list ruleset | grep -c . || true');
  return result;
}

async function program(
  backend: BackendName,
  size: number,
  changes: number,
  withDump: boolean,
): Promise<ProgrammingResult> {
  await cleanKernel();
  const scope: LbScope = { kind: 'network', networkId: 'bench' };
  const { lb, close } = makeBackend(backend, [scope]);
  try {
    const desired = benchServices(size);
    let t0 = performance.now();
    const fresh = await lb.apply(lb.plan(desired, emptyLbState()));
    const freshMs = performance.now() - t0;
    const kernelServices =
      backend === 'ipvs'
        ? Number(sh('ipvsadm -Ln | grep -c "^TCP" || true').trim())
        : Number(
            sh(
              'nft list map ip meshd vips | grep -o "10\\.1[0-9][0-9]\\.[0-9]*\\.[0-9]* \\. tcp" | wc -l',
            ).trim(),
          );
    const vipAddresses =
      backend === 'ipvs' ? Number(sh('ip -4 -o addr show dev mdipvs0 | wc -l').trim()) : -1;
    const list = [...desired.services.values()];
    const changeMs: number[] = [];
    let changeOps = 0;
    for (let i = 0; i < changes; i++) {
      const { previous, next } = oneEndpointChange(list, i);
      t0 = performance.now();
      changeOps = (await lb.apply([{ type: 'update-service', service: next, previous }])).kernelOperations;
      changeMs.push(performance.now() - t0);
    }
    t0 = performance.now();
    const dumped = withDump ? (await lb.dump()).services.size : -1;
    const dumpMs = withDump ? performance.now() - t0 : -1;
    return {
      backend,
      services: size,
      freshMs,
      freshOps: fresh.kernelOperations,
      changeMs,
      changeOps,
      dumpMs,
      dumpedServices: dumped,
      kernelServices,
      vipAddresses,
    };
  } finally {
    close();
    await cleanKernel();
  }
}

async function main(): Promise<void> {
  const [mode, ...args] = process.argv.slice(2);
  let out: unknown;
  if (mode === 'publish') out = await publish(JSON.parse(args[0] ?? '{}') as PublishSpec);
  else if (mode === 'program') {
    const backend = args[0] as BackendName;
    out = await program(backend, Number(args[1]), Number(args[2]), args[3] === 'dump');
  } else throw new Error(`guest: unknown mode ${String(mode)} (publish, program)`);
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
