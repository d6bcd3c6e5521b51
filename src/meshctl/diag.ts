import type { Command } from 'commander';
import {
  type DiagBackend,
  type DiagDispatchedService,
  DiagnoseResponse,
  type DiagVirtualService,
} from '../api/gen/meshd/v1/diag.js';
import { MeshError } from '../common/errors.js';
import type { CliContext } from './context.js';
import { shortId, table } from './format.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One line of the verdict: what was checked, how it went, what it means for the operator. */
export interface DiagCheck {
  check: string;
  status: CheckStatus;
  detail: string;
}

const DAY_MS = 24 * 3600 * 1000;
/** A certificate closer than this to expiry is worth a warning (renewal should have happened). */
const CERT_WARN_MS = DAY_MS;

/**
 * Pure: the verdict on what one node reported. "fail" means the published
 * port (or the node's part of the mesh) can be broken by it; "warn" is worth
 * knowing but breaks nothing by itself.
 */
export function judgeDiagnosis(facts: DiagnoseResponse): DiagCheck[] {
  const checks: DiagCheck[] = [];
  const add = (check: string, status: CheckStatus, detail: string) => checks.push({ check, status, detail });
  const node = facts.node;
  add(
    'node',
    'ok',
    `${node?.role ?? '?'} ${node?.hostname ?? ''} (${shortId(node?.nodeId ?? '')}) in cluster ${shortId(node?.clusterId ?? '')}`,
  );
  const managers = facts.managers;
  if (node?.role === 'manager') {
    const leader = managers?.raftLeaderNodeId ?? '';
    if (leader === '')
      add('raft', 'fail', 'no Raft leader known: fewer than a majority of managers can reach each other');
    else
      add(
        'raft',
        'ok',
        `leader ${shortId(leader)}${managers?.thisNodeLeads ? ' (this node)' : ''}, ${Object.keys(managers?.raftMembers ?? {}).length} members`,
      );
  }
  const probes = managers?.probes ?? [];
  if (probes.length === 0) add('managers', 'fail', 'no manager address known to this node');
  for (const p of probes)
    add(
      `manager ${p.address}`,
      p.reachable ? 'ok' : 'fail',
      p.reachable ? `reachable (TCP connect ${p.connectMs} ms)` : `unreachable: ${p.error}`,
    );
  judgeSession(facts, add);
  if ((facts.loadBalancer?.backend ?? '') === '') {
    add('data plane', 'warn', 'this node programs no data plane (data-plane: none): no LB, overlay nor DNS');
    judgeCertificate(facts, add);
    return checks;
  }
  judgeLoadBalancer(facts, add);
  const pending = facts.overlayNetworks[0]?.pendingChanges ?? 0;
  for (const n of facts.overlayNetworks)
    add(
      `network ${n.name || shortId(n.networkId)}`,
      'ok',
      `vni ${n.vni}, peers: ${n.peers.length === 0 ? 'none' : n.peers.join(' ')}`,
    );
  if (pending > 0)
    add(
      'overlay',
      'fail',
      `${pending} overlay/sandbox changes pending: the kernel drifted from what was sent`,
    );
  const dns = facts.dns;
  const missing = (dns?.expectedTaskIds ?? []).filter((t) => !(dns?.attachedTaskIds ?? []).includes(t));
  if (missing.length > 0)
    add('dns', 'fail', `127.0.0.11 not served in the sandbox of task ${missing.map(shortId).join(', ')}`);
  else
    add(
      'dns',
      'ok',
      `127.0.0.11 served in ${dns?.attachedTaskIds.length ?? 0} task sandboxes, ${dns?.serviceNames ?? 0} service names`,
    );
  judgeCertificate(facts, add);
  return checks;
}

type Add = (check: string, status: CheckStatus, detail: string) => void;

function judgeSession(facts: DiagnoseResponse, add: Add): void {
  const s = facts.session;
  if (s === undefined || !s.connected) {
    add(
      'session',
      'fail',
      'no dispatcher session: this node gets no tasks nor LB updates; see the managers above',
    );
    return;
  }
  // The dispatcher runs on the Raft leader only: on a worker this is where the leader is.
  add('session', 'ok', `open with the leader's dispatcher at ${s.manager} (session ${shortId(s.sessionId)})`);
  if (!s.hasAssignments) add('assignments', 'fail', 'no assignments received yet on the open session');
  else {
    const phases = new Map<string, number>();
    for (const t of s.tasks) phases.set(t.phase, (phases.get(t.phase) ?? 0) + 1);
    const summary = [...phases].map(([phase, n]) => `${n} ${phase}`).join(', ') || 'none';
    add('assignments', 'ok', `version ${s.assignmentsVersion}; local tasks: ${summary}`);
  }
  if (s.pendingStatusReports > 0)
    add(
      'status reports',
      'warn',
      `${s.pendingStatusReports} task status reports not yet accepted by a manager`,
    );
}

function judgeLoadBalancer(facts: DiagnoseResponse, add: Add): void {
  const lb = facts.loadBalancer;
  if (lb === undefined) return;
  if (lb.error !== '') add('load balancer', 'fail', `cannot read the ${lb.backend} state: ${lb.error}`);
  for (const s of lb.dispatched) judgeService(s, add);
  const differing = lb.virtualServices.filter((v) => backendDifferences(v).length > 0);
  for (const v of differing) add(`lb ${v.key}`, 'fail', backendDifferences(v).join('; '));
  add(
    'load balancer',
    differing.length === 0 ? 'ok' : 'fail',
    `${lb.backend}: ${lb.virtualServices.length - differing.length}/${lb.virtualServices.length} virtual services hold what the dispatcher sent`,
  );
}

function judgeService(s: DiagDispatchedService, add: Add): void {
  const active = s.endpoints.filter((e) => e.state === 'active').length;
  const draining = s.endpoints.length - active;
  const where = s.entryPoints.join(' ') || 'no VIP or published port';
  add(
    `service ${s.name || shortId(s.serviceId)}`,
    active === 0 ? 'fail' : 'ok',
    `${active} active, ${draining} draining endpoints; ${where}${active === 0 ? ': nothing can answer' : ''}`,
  );
}

/** Pure: how the kernel's backends of one virtual service differ from the desired ones, for people. */
export function backendDifferences(v: DiagVirtualService): string[] {
  const key = (b: DiagBackend) => `${b.address}:${b.port}`;
  const programmed = new Map(v.programmed.map((b) => [key(b), b]));
  const desired = new Map(v.desired.map((b) => [key(b), b]));
  if (!v.inKernel) return ['missing in the kernel: nothing answers there'];
  if (!v.wanted) return ['in the kernel but not sent by the dispatcher (stale)'];
  const out: string[] = [];
  const lacking = [...desired.keys()].filter((k) => !programmed.has(k));
  const extra = [...programmed.keys()].filter((k) => !desired.has(k));
  const weights = [...desired.values()]
    .filter((b) => programmed.has(key(b)) && programmed.get(key(b))?.weight !== b.weight)
    .map((b) => `${key(b)} weight ${programmed.get(key(b))?.weight} (should be ${b.weight})`);
  if (lacking.length > 0) out.push(`kernel lacks ${lacking.join(' ')}`);
  if (extra.length > 0) out.push(`kernel still sends to ${extra.join(' ')}`);
  out.push(...weights);
  return out;
}

function judgeCertificate(facts: DiagnoseResponse, add: Add): void {
  const c = facts.certificate;
  if (c === undefined || c.error !== '') {
    add('certificate', 'fail', `cannot read this node's certificate: ${c?.error ?? 'not reported'}`);
    return;
  }
  const leftMs = c.notAfterUnixMs - facts.nowUnixMs;
  const when = new Date(c.notAfterUnixMs).toISOString();
  if (leftMs <= 0) add('certificate', 'fail', `expired at ${when}: peers refuse this node's mTLS`);
  else if (leftMs < CERT_WARN_MS)
    add(
      'certificate',
      'warn',
      `expires in ${Math.round(leftMs / 60_000)} minutes (${when}) and was not renewed`,
    );
  else add('certificate', 'ok', `valid for ${Math.floor(leftMs / DAY_MS)} more days (until ${when})`);
}

/** `meshctl diag`: what this node's meshd knows, judged; exit 1 when a check fails. */
export function addDiagCommand(program: Command, ctx: CliContext): void {
  program
    .command('diag')
    .description(
      "check this node's part of the mesh: managers, session, load balancer, overlay, DNS, certificate",
    )
    .action(async () => {
      const facts = await ctx.clients.diag.diagnose({ probeTimeoutMs: 0 });
      const checks = judgeDiagnosis(facts);
      const failed = checks.filter((c) => c.status === 'fail');
      ctx.print({ ok: failed.length === 0, checks, facts: DiagnoseResponse.toJSON(facts) }, () =>
        table(
          ['STATUS', 'CHECK', 'DETAIL'],
          checks.map((c) => [c.status.toUpperCase(), c.check, c.detail]),
        ),
      );
      if (failed.length > 0)
        throw new MeshError(
          'DIAG_FAILED',
          `${failed.length} check(s) failed (${failed.map((c) => c.check).join(', ')}): see the FAIL lines above`,
        );
    });
}
