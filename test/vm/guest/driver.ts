// Runs inside a lab VM (bundled by the host, see ../helpers.ts): executes a
// JSON list of steps in one node process, because node starts in ~4 s under
// emulation, and prints one JSON array of results. Steps never throw: each
// result is { ok: true, value } or { ok: false, code, message }.
// `serve DIR` keeps one process for a whole test file (node's start cost
// ~10 s per call on a loaded host): it runs DIR/cmd-N.json (a step list) and
// answers DIR/res-N.json, each list as if in a fresh process.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { IpvsLoadBalancer } from '../../../dataplane/lb/ipvs/backend.js';
import { LocalIpvsNamespace } from '../../../dataplane/lb/ipvs/namespace.js';
import type { IpvsServiceOptions } from '../../../dataplane/lb/ipvs/translate.js';
import { emptyLbState, type LbScope, type LbVirtualService, scopeKey } from '../../../dataplane/lb/types.js';
import { IpvsClient } from '../../../dataplane/netlink/ipvs/client.js';
import type {
  IpvsDestination,
  IpvsRequest,
  IpvsService,
  IpvsServiceKey,
  IpvsTimeouts,
} from '../../../dataplane/netlink/ipvs/types.js';
import { systemClock } from '../../../src/common/clock.js';

export type GuestStep =
  | { step: 'sh'; cmd: string }
  | { step: 'sleep'; ms: number }
  | { step: 'writeFile'; path: string; text: string }
  /** Waits (at most timeoutMs) until the file exists. */
  | { step: 'waitFile'; path: string; timeoutMs: number }
  /** One reconciler round of the IPVS backend (sweep drains, dump, plan, apply); returns the change types. */
  | {
      step: 'lbSync';
      services: LbVirtualService[];
      options: Record<string, IpvsServiceOptions>;
      /** Network scopes live in this named namespace (IPVS through the helper started with helperCommand). */
      netns?: string;
      helperCommand?: string[];
    }
  /** Programming-time benchmark; see scripts/bench/ipvs.ts. */
  | { step: 'benchProgramming'; services: number; endpoints: number }
  | { step: 'info' }
  | { step: 'flush' }
  | { step: 'addService'; service: IpvsService }
  | { step: 'updateService'; service: IpvsService }
  | { step: 'deleteService'; key: IpvsServiceKey }
  | { step: 'addDestination'; key: IpvsServiceKey; dest: IpvsDestination }
  | { step: 'updateDestination'; key: IpvsServiceKey; dest: IpvsDestination }
  | { step: 'deleteDestination'; key: IpvsServiceKey; address: string; port: number }
  | { step: 'listServices' }
  | { step: 'listDestinations'; key: IpvsServiceKey }
  | { step: 'getTimeouts' }
  /** IpvsClient.batch: pipelined requests; the value is the list of refused ones. */
  | { step: 'batch'; requests: IpvsRequest[] }
  | { step: 'setTimeouts'; timeouts: IpvsTimeouts }
  /** A TCP server on address:port that answers every connection with `reply` then closes. */
  | { step: 'tcpServe'; address: string; port: number; reply: string }
  /** `count` sequential TCP connections; returns the replies. */
  | { step: 'tcpConnect'; address: string; port: number; count: number };

export type GuestResult = { ok: true; value: unknown } | { ok: false; code: string; message: string };

async function connectOnce(address: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port, timeout: 5_000 });
    let data = '';
    socket.on('data', (chunk) => {
      data += chunk.toString();
    });
    socket.on('end', () => resolve(data));
    socket.on('timeout', () => socket.destroy(new Error(`connect ${address}:${port} timed out`)));
    socket.on('error', reject);
  });
}

let lb: IpvsLoadBalancer | undefined;
let lbScopes: LbScope[] = [];
/** The namespaces `lb` programs through; a served step list ends by closing them (helpers exit). */
let lbNamespaces: LocalIpvsNamespace[] = [];

async function lbSync(
  services: LbVirtualService[],
  options: Record<string, IpvsServiceOptions>,
  netns?: string,
  helperCommand?: string[],
): Promise<unknown> {
  const local = new LocalIpvsNamespace(null);
  const named = netns === undefined ? null : new LocalIpvsNamespace(netns, helperCommand);
  if (lb === undefined) lbNamespaces = named === null ? [local] : [local, named];
  lb ??= new IpvsLoadBalancer({
    namespaceFor: (ns) => (ns === null ? local : (named ?? local)),
    resolveScope: (scope) => (scope.kind === 'network' && netns !== undefined ? netns : null),
    listScopes: () => lbScopes,
    clock: systemClock,
  });
  const desired = emptyLbState();
  for (const svc of services) desired.services.set(svc.key, svc);
  const scopes = new Map(services.map((svc) => [scopeKey(svc.scope), svc.scope]));
  lbScopes = [...scopes.values()];
  lb.setServiceOptions(new Map(Object.entries(options)));
  const drained = await lb.sweepDrains();
  const changes = lb.plan(desired, await lb.dump());
  await lb.apply(changes);
  return { drained, changes: changes.map((c) => `${c.type} ${c.service.key}`) };
}

/**
 * Times meshd's netlink client against ipvsadm -R (the C tool, one process,
 * the same rules) for a full load, and both for a one-endpoint change.
 */
async function benchProgramming(ipvs: IpvsClient, services: number, endpoints: number): Promise<unknown> {
  const vip = (i: number) => `10.100.${i >> 8}.${i & 255}`;
  const svc = (i: number): IpvsService => ({
    key: { kind: 'inet', protocol: 'tcp', address: vip(i), port: 80 },
    scheduler: 'rr',
    schedFlags: { flag1: false, flag2: false, flag3: false },
    persistenceS: 0,
    netmask: 0xffffffff,
    onePacket: false,
    persistenceEngine: '',
  });
  const dest = (j: number, weight = 1): IpvsDestination => ({
    address: `10.200.0.${j + 1}`,
    port: 8080,
    forward: 'masq',
    weight,
    upperThreshold: 0,
    lowerThreshold: 0,
  });
  await ipvs.flush();
  let t0 = performance.now();
  for (let i = 0; i < services; i++) {
    await ipvs.addService(svc(i));
    for (let j = 0; j < endpoints; j++) await ipvs.addDestination(svc(i).key, dest(j));
  }
  const meshdLoadMs = performance.now() - t0;
  t0 = performance.now();
  await ipvs.updateDestination(svc(services >> 1).key, dest(0, 0));
  const meshdOneChangeMs = performance.now() - t0;
  t0 = performance.now();
  const dumped = await ipvs.listServices();
  const meshdDumpServicesMs = performance.now() - t0;

  await ipvs.flush();
  const rules: string[] = [];
  for (let i = 0; i < services; i++) {
    rules.push(`-A -t ${vip(i)}:80 -s rr`);
    for (let j = 0; j < endpoints; j++) rules.push(`-a -t ${vip(i)}:80 -r 10.200.0.${j + 1}:8080 -m -w 1`);
  }
  writeFileSync('/tmp/bench.rules', `${rules.join('\n')}\n`);
  t0 = performance.now();
  execFileSync('bash', ['-c', 'ipvsadm -R < /tmp/bench.rules']);
  const ipvsadmLoadMs = performance.now() - t0;
  t0 = performance.now();
  execFileSync('ipvsadm', ['-e', '-t', `${vip(services >> 1)}:80`, '-r', '10.200.0.1:8080', '-m', '-w', '0']);
  const ipvsadmOneChangeMs = performance.now() - t0;
  await ipvs.flush();
  return {
    meshdLoadMs,
    meshdOneChangeMs,
    meshdDumpServicesMs,
    dumpedServices: dumped.length,
    ipvsadmLoadMs,
    ipvsadmOneChangeMs,
  };
}

async function runStep(client: () => Promise<IpvsClient>, s: GuestStep): Promise<unknown> {
  switch (s.step) {
    case 'writeFile':
      writeFileSync(s.path, s.text);
      return null;
    case 'waitFile': {
      const deadline = Date.now() + s.timeoutMs;
      while (!existsSync(s.path)) {
        if (Date.now() > deadline)
          throw new Error(`waitFile: ${s.path} did not appear within ${s.timeoutMs} ms`);
        await sleep(100);
      }
      return null;
    }
    case 'lbSync':
      return lbSync(s.services, s.options, s.netns, s.helperCommand);
    case 'benchProgramming':
      return benchProgramming(await client(), s.services, s.endpoints);
    case 'sh':
      try {
        return { stdout: execFileSync('bash', ['-c', s.cmd], { encoding: 'utf8' }), exitCode: 0 };
      } catch (err) {
        const e = err as { status?: number; stdout?: string; stderr?: string };
        return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', exitCode: e.status ?? -1 };
      }
    case 'sleep':
      await sleep(s.ms);
      return null;
    case 'info':
      return (await client()).info();
    case 'flush':
      return (await client()).flush();
    case 'addService':
      return (await client()).addService(s.service);
    case 'updateService':
      return (await client()).updateService(s.service);
    case 'deleteService':
      return (await client()).deleteService(s.key);
    case 'addDestination':
      return (await client()).addDestination(s.key, s.dest);
    case 'updateDestination':
      return (await client()).updateDestination(s.key, s.dest);
    case 'deleteDestination':
      return (await client()).deleteDestination(s.key, s.address, s.port);
    case 'listServices':
      return (await client()).listServices();
    case 'listDestinations':
      return (await client()).listDestinations(s.key);
    case 'getTimeouts':
      return (await client()).getTimeouts();
    case 'batch':
      return (await client()).batch(s.requests);
    case 'setTimeouts':
      return (await client()).setTimeouts(s.timeouts);
    case 'tcpServe': {
      const server = createServer((socket) => socket.end(s.reply));
      await new Promise<void>((resolve) => server.listen(s.port, s.address, resolve));
      server.unref();
      return null;
    }
    case 'tcpConnect': {
      const replies: string[] = [];
      for (let i = 0; i < s.count; i++) replies.push(await connectOnce(s.address, s.port));
      return replies;
    }
  }
}

async function runSteps(steps: GuestStep[]): Promise<GuestResult[]> {
  let opened: IpvsClient | undefined;
  const client = async (): Promise<IpvsClient> => {
    opened ??= await IpvsClient.open();
    return opened;
  };
  const results: GuestResult[] = [];
  for (const s of steps) {
    try {
      results.push({ ok: true, value: (await runStep(client, s)) ?? null });
    } catch (err) {
      const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : 'ERROR';
      results.push({ ok: false, code, message: err instanceof Error ? err.message : String(err) });
    }
  }
  opened?.close();
  for (const ns of lbNamespaces) ns.close();
  lb = undefined;
  lbScopes = [];
  lbNamespaces = [];
  return results;
}

/** A served driver with no command for this long exits: nothing outlives a killed test. */
const SERVE_IDLE_MS = 15 * 60_000;

async function serve(dir: string): Promise<void> {
  writeFileSync(join(dir, 'ready'), String(process.pid));
  for (let seq = 1; ; seq++) {
    const cmd = join(dir, `cmd-${seq}.json`);
    const idleUntil = Date.now() + SERVE_IDLE_MS;
    while (!existsSync(cmd)) {
      if (Date.now() > idleUntil) return;
      await sleep(50);
    }
    const results = await runSteps(JSON.parse(readFileSync(cmd, 'utf8')) as GuestStep[]);
    const res = join(dir, `res-${seq}.json`);
    writeFileSync(`${res}.tmp`, JSON.stringify(results));
    renameSync(`${res}.tmp`, res);
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === 'serve') {
    await serve(process.argv[3] ?? '.');
    process.exit(0);
  }
  const steps = JSON.parse(readFileSync(process.argv[2] ?? '/dev/stdin', 'utf8')) as GuestStep[];
  process.stdout.write(`${JSON.stringify(await runSteps(steps))}\n`);
  process.exit(0);
}

void main();
