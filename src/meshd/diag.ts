/**
 * The daemon's side of `meshctl diag`: gathers what this node knows (identity,
 * Raft leader, manager reachability, agent session, load balancer desired vs
 * programmed, overlay peers, DNS, certificate) into one DiagnoseResponse on
 * the local socket. It judges nothing: src/meshctl/diag.ts does, so the rules
 * live in one pure place. `diagFacts` is pure; `DiagCollector` does the I/O.
 */
import { connect } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import { x509 } from '../../controlplane/ca/x509.js';
import type { ManagerNode } from '../../controlplane/manager/manager-node.js';
import type { Agent } from '../../dataplane/agent/agent.js';
import { type DesiredState, EndpointState } from '../api/gen/meshd/v1/dataplane.js';
import {
  type DiagBackend,
  type DiagCertificate,
  type DiagDispatchedService,
  type DiagManagerProbe,
  type DiagnoseResponse,
  type DiagOverlayNetwork,
  type DiagServiceServer,
  DiagServiceService,
  type DiagVirtualService,
} from '../api/gen/meshd/v1/diag.js';
import type { Clock } from '../common/clock.js';
import { errorMessage } from '../common/errors.js';
import { splitHostPort } from '../common/host-port.js';

const DEFAULT_PROBE_TIMEOUT_MS = 1000;
const MAX_PROBE_TIMEOUT_MS = 10_000;

/** The reconciler's per-programmer view (dataplane/reconciler), as the agent hands it over. */
interface ProgrammerViewJson {
  name: string;
  desired: unknown;
  programmed: unknown;
  pending: unknown[];
}

interface LbServiceJson {
  key: string;
  backends: DiagBackend[];
}

/** What the daemon read, before it becomes the response (the pure part's input). */
export interface DiagInputs {
  nowMs: number;
  node: { nodeId: string; clusterId: string; role: string; hostname: string };
  raft:
    | {
        leaderId: string | null;
        isLeader: boolean;
        members: Record<string, string>;
        term?: number;
        voters?: string[];
        learners?: string[];
      }
    | undefined;
  probes: DiagManagerProbe[];
  session: ReturnType<Agent['status']> | undefined;
  applied: DesiredState | undefined;
  /** `dataplaneViews()` of the agent: `reconciler` (ProgrammerView[]) and `dns` ({ attached }). */
  views: { name: string; view: unknown; error: string | undefined }[];
  certificate: DiagCertificate;
}

/** Pure: the response from what was read. */
export function diagFacts(input: DiagInputs): DiagnoseResponse {
  const reconciler = input.views.find((v) => v.name === 'reconciler');
  const programmers = Array.isArray(reconciler?.view) ? (reconciler.view as ProgrammerViewJson[]) : [];
  const lb = programmers.find((p) => p.name.startsWith('lb-'));
  const overlayPending = programmers
    .filter((p) => p.name === 'overlay' || p.name === 'sandbox')
    .reduce((n, p) => n + p.pending.length, 0);
  const dns = input.views.find((v) => v.name === 'dns')?.view as { attached?: string[] } | undefined;
  const applied = input.applied;
  return {
    nowUnixMs: input.nowMs,
    node: input.node,
    managers: {
      raftLeaderNodeId: input.raft?.leaderId ?? '',
      thisNodeLeads: input.raft?.isLeader ?? false,
      raftMembers: input.raft?.members ?? {},
      probes: input.probes,
      raftTerm: input.raft?.term ?? 0,
      raftVoters: input.raft?.voters ?? [],
      raftLearners: input.raft?.learners ?? [],
    },
    session: {
      connected: input.session?.connected !== undefined,
      manager: input.session?.connected?.manager ?? '',
      sessionId: input.session?.connected?.sessionId ?? '',
      hasAssignments: input.session?.version !== undefined,
      assignmentsVersion: input.session?.version ?? 0,
      pendingStatusReports: input.session?.pendingReports ?? 0,
      tasks: (input.session?.tasks ?? []).map((t) => ({ taskId: t.taskId, phase: t.phase, pid: t.pid ?? 0 })),
    },
    loadBalancer: {
      backend: lb === undefined ? '' : lb.name.slice('lb-'.length),
      dispatched: dispatchedServices(applied),
      virtualServices: lb === undefined ? [] : virtualServices(lb),
      error: reconciler?.error ?? '',
    },
    overlayNetworks: (applied?.networks ?? []).map(
      (n): DiagOverlayNetwork => ({
        networkId: n.id,
        name: n.name,
        vni: n.vni,
        peers: n.peers.map((p) => p.underlayAddress),
        pendingChanges: overlayPending,
      }),
    ),
    dns: {
      expectedTaskIds: (applied?.sandboxes ?? []).map((s) => s.taskId).sort(),
      attachedTaskIds: dns?.attached ?? [],
      serviceNames: (applied?.services ?? []).filter((s) => s.name !== '').length,
    },
    certificate: input.certificate,
  };
}

function dispatchedServices(state: DesiredState | undefined): DiagDispatchedService[] {
  return (state?.services ?? []).map((s) => ({
    serviceId: s.id,
    name: s.name,
    endpoints: s.endpoints.map((e) => ({
      taskId: e.taskId,
      nodeId: e.nodeId,
      address: e.address,
      state: e.state === EndpointState.ENDPOINT_STATE_DRAINING ? 'draining' : 'active',
    })),
    entryPoints: [
      ...s.ports
        .filter((p) => p.publishedPort > 0)
        .map((p) => `published:${p.protocol === 2 ? 'udp' : 'tcp'}/${p.publishedPort}`),
      ...s.vips.map((v) => `vip:${v.address}`),
    ],
  }));
}

function virtualServices(view: ProgrammerViewJson): DiagVirtualService[] {
  const services = (model: unknown) =>
    new Map(((model as { services?: LbServiceJson[] }).services ?? []).map((s) => [s.key, s.backends]));
  const desired = services(view.desired);
  const programmed = services(view.programmed);
  const keys = [...new Set([...desired.keys(), ...programmed.keys()])].sort();
  const backends = (list: DiagBackend[] | undefined) =>
    (list ?? []).map((b) => ({ address: b.address, port: b.port, weight: b.weight }));
  return keys.map((key) => ({
    key,
    desired: backends(desired.get(key)),
    programmed: backends(programmed.get(key)),
    wanted: desired.has(key),
    inKernel: programmed.has(key),
  }));
}

export function certificateFacts(certChainPem: string): DiagCertificate {
  try {
    const cert = new x509.X509Certificate(certChainPem);
    return { notAfterUnixMs: cert.notAfter.getTime(), subject: cert.subject, error: '' };
  } catch (err) {
    return { notAfterUnixMs: 0, subject: '', error: errorMessage(err) };
  }
}

/** One TCP connect to a manager's listener, bounded by `timeoutMs`. */
export function probeManager(address: string, timeoutMs: number, clock: Clock): Promise<DiagManagerProbe> {
  const { host, port: portText } = splitHostPort(address);
  const port = Number(portText);
  const startedMs = clock.nowMs();
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (reachable: boolean, error: string) => {
      socket.destroy();
      clearTimeout(timer);
      resolve({ address, reachable, error, connectMs: reachable ? clock.nowMs() - startedMs : 0 });
    };
    const timer = setTimeout(() => done(false, `no TCP connection within ${timeoutMs} ms`), timeoutMs);
    socket.once('connect', () => done(true, ''));
    socket.once('error', (err) => done(false, err.message));
  });
}

export interface DiagSources {
  node: DiagInputs['node'];
  certChainPem: string;
  clock: Clock;
  manager: ManagerNode | undefined;
  /** Set once the agent runs (after the manager role on a manager). */
  agent: Agent | undefined;
}

/** DiagService on the local socket: reads `sources` at each call. */
export function addDiagService(server: grpc.Server, sources: DiagSources): void {
  const implementation: DiagServiceServer = {
    diagnose: (call, callback) => {
      const requested = call.request.probeTimeoutMs;
      const timeoutMs = Math.min(
        requested === 0 ? DEFAULT_PROBE_TIMEOUT_MS : requested,
        MAX_PROBE_TIMEOUT_MS,
      );
      collect(sources, timeoutMs).then(
        (facts) => callback(null, facts),
        (err: unknown) => callback({ code: 13, details: `diag failed: ${errorMessage(err)}` }, null),
      );
    },
  };
  server.addService(DiagServiceService, implementation);
}

async function collect(sources: DiagSources, probeTimeoutMs: number): Promise<DiagnoseResponse> {
  const { agent, manager, clock } = sources;
  const session = agent?.status();
  const [probes, views] = await Promise.all([
    Promise.all((session?.knownManagers ?? []).map((a) => probeManager(a, probeTimeoutMs, clock))),
    agent?.dataplaneViews() ?? Promise.resolve([]),
  ]);
  return diagFacts({
    nowMs: clock.nowMs(),
    node: sources.node,
    raft: manager === undefined ? undefined : raftFacts(manager),
    probes,
    session,
    applied: agent?.appliedState(),
    views,
    certificate: certificateFacts(sources.certChainPem),
  });
}

function raftFacts(manager: ManagerNode): NonNullable<DiagInputs['raft']> {
  const s = manager.raft.status();
  return {
    leaderId: manager.leaderId(),
    isLeader: manager.isLeader(),
    members: manager.members(),
    term: s.term,
    voters: s.confState.voters,
    learners: s.confState.learners,
  };
}
