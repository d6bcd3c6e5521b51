import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { bootstrapCluster } from '../../controlplane/allocator/config.js';
import {
  createRootCA,
  hasRootKey,
  loadRootCAFromDir,
  loadRootCertificate,
  roleToOu,
  saveRootCA,
} from '../../controlplane/ca/authority.js';
import { joinCluster } from '../../controlplane/ca/ca-client.js';
import { createCaServer, createCaServiceHandlers } from '../../controlplane/ca/ca-service.js';
import { CertificateAuthority, inMemoryStateFor } from '../../controlplane/ca/certificate-authority.js';
import { signerForExternalCa } from '../../controlplane/ca/external-signer.js';
import {
  createKeyAndCsr,
  loadNodeTlsMaterial,
  type NodeTlsMaterial,
  saveNodeTlsMaterial,
} from '../../controlplane/ca/node-identity.js';
import { certificateValidity } from '../../controlplane/ca/renewal.js';
import { authorityObject, certificateObject, StoreCaState } from '../../controlplane/ca/store-ca-state.js';
import { ControlApi } from '../../controlplane/controlapi/control-api.js';
import { addControlService } from '../../controlplane/controlapi/grpc-service.js';
import { DEFAULT_HEARTBEAT_POLICY } from '../../controlplane/dispatcher/heartbeat.js';
import { DISPATCHER_POLICY, Dispatcher } from '../../controlplane/dispatcher/server.js';
import { leaderOnlyLogsService, localLogsService } from '../../controlplane/logbroker/forward.js';
import { LOG_BROKER_POLICY, LOGS_POLICY, LogBroker } from '../../controlplane/logbroker/server.js';
import { ManagerNode } from '../../controlplane/manager/manager-node.js';
import {
  addMembershipService,
  LEADER_NODE_ADDRESS_METADATA_KEY,
} from '../../controlplane/manager/membership-service.js';
import { otherManagerHosts, readReplicaOffline } from '../../controlplane/manager/offline-replica.js';
import { Agent, type DataplaneTarget } from '../../dataplane/agent/agent.js';
import { EmbeddedDns } from '../../dataplane/dns/embedded.js';
import { logLbBackend, SANDBOX_PROGRAMMER, selectNodeDataplane } from '../../dataplane/reconciler/node.js';
import { CAServiceService } from '../api/gen/meshd/v1/ca.js';
import { DispatcherServiceService } from '../api/gen/meshd/v1/dispatcher.js';
import { LogBrokerServiceService, LogsServiceService } from '../api/gen/meshd/v1/logs.js';
import {
  type JoinRaftResponse,
  RaftMembershipServiceClient,
  RaftMembershipServiceService,
} from '../api/gen/meshd/v1/membership.js';
import { Node, NodeAvailability, NodeRole, NodeState } from '../api/gen/meshd/v1/objects.js';
import { systemClock } from '../common/clock.js';
import { writeFileDurable } from '../common/durable-file.js';
import { errorMessage, MeshError } from '../common/errors.js';
import { joinHostPort, splitHostPort } from '../common/host-port.js';
import { newId } from '../common/ids.js';
import { subsystemLogger } from '../common/logger.js';
import { servicePolicy } from '../common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
  SECURE_CHANNEL_OPTIONS,
} from '../common/transport/credentials.js';
import { startCertificateKeeping } from './certificate-keeping.js';
import type { DaemonConfig } from './config.js';
import { addDiagService, type DiagSources } from './diag.js';
import { type ExternalCaInit, loadExternalCa, saveExternalCa } from './external-ca.js';
import { appliedStateRecorder } from './state-file.js';

const log = subsystemLogger('meshd');

/** How often the leader checks whether a root rotation can finish. */
const ROOT_ROTATION_CHECK_MS = 1_000;

/** `<state-dir>/node.json`: who this host is in the mesh. */
export interface LocalNode {
  nodeId: string;
  clusterId: string;
  role: 'manager' | 'worker';
  /** Set by init: the first run founds the Raft cluster and writes the cluster objects. */
  founder: boolean;
  /** The founder's first run has written the cluster objects. */
  bootstrapped: boolean;
  /** Manager addresses (HOST:PORT) a joined node's agent starts from. */
  managers?: string[];
}

const paths = (stateDir: string) => ({
  node: join(stateDir, 'node.json'),
  tls: join(stateDir, 'tls'),
  ca: join(stateDir, 'ca'),
  raft: join(stateDir, 'raft'),
  logs: join(stateDir, 'logs'),
});

export function readNodeState(stateDir: string): LocalNode {
  const p = paths(stateDir).node;
  if (!existsSync(p))
    throw new MeshError(
      'NOT_INITIALIZED',
      `${stateDir} holds no node: run "meshd init" (first manager) or "meshd join --token ..." first`,
    );
  return JSON.parse(readFileSync(p, 'utf8')) as LocalNode;
}

function writeNodeState(stateDir: string, state: LocalNode): void {
  writeFileDurable(paths(stateDir).node, `${JSON.stringify(state, null, 2)}\n`, 0o600);
}

/**
 * `meshd init`: a new cluster ID, root CA (or an external CA's root, whose
 * signer issues every certificate), this host's manager certificate. Raft starts at `run`.
 */
export async function initNode(cfg: DaemonConfig, external?: ExternalCaInit): Promise<LocalNode> {
  const p = paths(cfg.stateDir);
  if (existsSync(p.node))
    throw new MeshError(
      'ALREADY_INITIALIZED',
      `${cfg.stateDir} already holds a node: start it with "meshd run", or remove ${cfg.stateDir} to start over`,
    );
  for (const dir of [p.tls, p.ca, p.raft, p.logs]) mkdirSync(dir, { recursive: true, mode: 0o700 });
  // With an external CA the cluster ID is the O of its root (node certificates carry it).
  const clusterId = external?.root.clusterId ?? newId();
  const root = external?.root ?? (await createRootCA({ clusterId, nowMs: systemClock.nowMs() }));
  const ca = new CertificateAuthority({
    root,
    clock: systemClock,
    ...(external === undefined ? {} : { signer: signerForExternalCa(external.config, root.certPem) }),
  });
  const { privateKeyPem, csrPem } = await createKeyAndCsr();
  // The founder's own certificate comes from the signer: an external CA that
  // does not answer (or signs with another root) fails init here, before anything is kept.
  const issued = await ca.issueForJoinToken(ca.joinTokens().manager, csrPem, [hostOf(cfg.advertiseAddress)]);
  if (hasRootKey(root)) saveRootCA(p.ca, root);
  else {
    writeFileDurable(join(p.ca, 'root.crt'), root.certPem, 0o644);
    saveExternalCa(p.ca, external!.config);
  }
  saveNodeTlsMaterial(p.tls, {
    privateKeyPem,
    certChainPem: issued.certChainPem,
    trustBundlePem: ca.trustBundlePem(),
  });
  const state: LocalNode = {
    nodeId: issued.nodeId,
    clusterId,
    role: 'manager',
    founder: true,
    bootstrapped: false,
  };
  writeNodeState(cfg.stateDir, state);
  return state;
}

function hostOf(hostPort: string): string {
  return splitHostPort(hostPort).host;
}

/** Steps to undo what was started, run last-first by `stopAll`; a failing step is logged and the rest still run. */
function stopList(): { stops: (() => Promise<void>)[]; stopAll: () => Promise<void> } {
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse())
      await stop().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'stop step failed'));
    stops.length = 0;
  };
  return { stops, stopAll };
}

/** A running node; `stop` is the graceful path (tasks drained and stopped, leadership handed over). */
export interface RunningDaemon {
  state: LocalNode;
  manager: ManagerNode | undefined;
  /** The CA on a manager (every manager serves it), undefined on a worker. */
  ca: CertificateAuthority | undefined;
  agent: Agent;
  /** Port of the mTLS listener (CA + dispatcher) on a manager, 0 on a worker. */
  listenPort: number;
  stop(): Promise<void>;
}

/**
 * `meshd run`. Every node runs the agent (tasks + data plane). A manager
 * also runs Raft + store + control loop (ManagerNode), the CA and the
 * dispatcher on the mTLS listener, and the control API + join tokens on the
 * local Unix socket (mode 0660, group `socket-group` when it exists).
 */
export async function runNode(cfg: DaemonConfig): Promise<RunningDaemon> {
  const p = paths(cfg.stateDir);
  let state = readNodeState(cfg.stateDir);
  // One object for the life of the process: renewals replace its contents, so
  // whatever builds credentials from it later (the agent's channels) gets the new certificate.
  const material = loadNodeTlsMaterial(p.tls);
  const { stops, stopAll } = stopList();
  try {
    let role: ManagerRole | undefined;
    let workerSocket: (() => Promise<void>) | undefined;
    // The manager role stops on its own (a demotion), and last on shutdown.
    stops.push(async () => {
      await role?.stop();
      role = undefined;
    });
    stops.push(async () => {
      await workerSocket?.();
      workerSocket = undefined;
    });
    // Read at each diag call: the role and the certificate change under a promotion or renewal.
    const diag: DiagSources = {
      get node() {
        return { nodeId: state.nodeId, clusterId: state.clusterId, role: state.role, hostname: cfg.hostname };
      },
      get certChainPem() {
        return material.certChainPem;
      },
      clock: systemClock,
      get manager() {
        return role?.manager;
      },
      agent: undefined,
    };
    if (state.role === 'manager') role = await startManagerRole(cfg, state, material, diag);
    // With port 0 (tests) the advertised port is the one the listener got.
    const advertise = cfg.advertiseAddress.endsWith(':0')
      ? `${cfg.advertiseAddress.slice(0, -2)}:${role?.listenPort ?? 0}`
      : cfg.advertiseAddress;
    const agent = await startAgent({ ...cfg, advertiseAddress: advertise }, state, material, stops);
    diag.agent = agent;
    if (state.role === 'worker') workerSocket = await serveWorkerSocket(cfg, diag);
    const changeRole = async (next: 'manager' | 'worker') => {
      if (next === state.role) return;
      if (next === 'manager') {
        state = { ...state, role: 'manager', founder: false, bootstrapped: true };
        resetRaftDir(p.raft);
        writeNodeState(cfg.stateDir, state);
        // The manager role binds the local socket with the control API (and diag).
        await workerSocket?.();
        workerSocket = undefined;
        role = await startManagerRole(cfg, state, material, diag);
      } else {
        const others = role?.otherManagerAddresses() ?? [];
        await role?.leaveAndStop();
        role = undefined;
        resetRaftDir(p.raft);
        state = { ...state, role: 'worker', founder: false, managers: others };
        writeNodeState(cfg.stateDir, state);
        workerSocket = await serveWorkerSocket(cfg, diag);
      }
      log.info({ nodeId: state.nodeId, role: state.role }, 'node role changed');
    };
    stops.push(
      startCertificateKeeping({
        cfg: { ...cfg, advertiseAddress: advertise },
        state: () => state,
        material,
        reload: (m) => role?.reload(m),
        onRole: changeRole,
      }),
    );
    log.info({ nodeId: state.nodeId, role: state.role, listen: cfg.listenAddress }, 'node running');
    return {
      get state() {
        return state;
      },
      get manager() {
        return role?.manager;
      },
      get ca() {
        return role?.ca;
      },
      get listenPort() {
        return role?.listenPort ?? 0;
      },
      agent,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** A demoted node's Raft state must not come back: a later promotion joins afresh. */
function resetRaftDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** The running manager role of this node. */
interface ManagerRole {
  manager: ManagerNode;
  ca: CertificateAuthority;
  listenPort: number;
  /** Installs a renewed certificate in the role's TLS listeners. */
  reload(material: NodeTlsMaterial): void;
  /** host:port of the other managers (where a demoted node's agent goes). */
  otherManagerAddresses(): string[];
  /** Demotion: wait until the leader took this node out of the voters, then stop. */
  leaveAndStop(): Promise<void>;
  stop(): Promise<void>;
}

async function startManagerRole(
  cfg: DaemonConfig,
  state: LocalNode,
  material: NodeTlsMaterial,
  diag: DiagSources,
): Promise<ManagerRole> {
  const { stops, stopAll } = stopList();
  try {
    return await startManagerParts(cfg, state, material, stops, diag, stopAll);
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function startManagerParts(
  cfg: DaemonConfig,
  state: LocalNode,
  material: NodeTlsMaterial,
  stops: (() => Promise<void>)[],
  diag: DiagSources,
  stopAll: () => Promise<void>,
): Promise<ManagerRole> {
  const p = paths(cfg.stateDir);
  const raftCredentials = new ReloadableServerCredentials(material);
  const raftChannelCredentials = (m: NodeTlsMaterial) =>
    createChannelCredentials(m, { clusterId: state.clusterId, organizationalUnit: roleToOu('manager') });
  const manager = await ManagerNode.start({
    id: state.nodeId,
    dataDir: p.raft,
    listenAddress: cfg.raftListenAddress,
    serverCredentials: raftCredentials,
    channelCredentials: raftChannelCredentials(material),
    peers: {},
    ...(state.founder ? { bootstrap: { voters: [state.nodeId], learners: [] } } : {}),
    onFatal: (err) => {
      log.fatal({ err: err.message }, 'raft storage failed; exiting');
      process.exit(70);
    },
  });
  // Every manager is the CA: its state (root key, tokens, denylist) comes
  // through Raft, which runs only between managers over mTLS.
  const ca = new CertificateAuthority({
    state: new StoreCaState({
      clusterId: state.clusterId,
      store: manager.store,
      proposer: manager.proposer,
      sync: () => manager.linearizableRead(),
      clock: systemClock,
    }),
    clock: systemClock,
  });
  // Last step of stop: the leader hands leadership over before Raft stops.
  stops.push(() => manager.stop({ transferLeadership: true }));
  if (state.founder && !state.bootstrapped) {
    await bootstrapStore(manager, state, cfg, material);
    writeNodeState(cfg.stateDir, { ...state, bootstrapped: true });
  }
  if (!state.founder) await joinRaft(manager, state, cfg, material);
  stops.push(finishRootRotations(manager, ca));
  const leaderTcpAddress = (): string | undefined => {
    const lead = manager.leaderId();
    const host = lead === null ? undefined : manager.store.get('node', lead)?.addresses[0];
    return host === undefined || lead === state.nodeId ? undefined : joinHostPort(host, port());
  };
  const dispatcher = new Dispatcher({
    store: manager.replica(),
    policy: { ...DEFAULT_HEARTBEAT_POLICY, basePeriodMs: cfg.dispatcherHeartbeatMs },
    proposer: manager.proposer,
    // A follower sends agents to the leader (a worker may know only this manager).
    leaderAddress: () => leaderTcpAddress(),
    // Agents fail over among these; every manager listens on the same port as this one (lab and swarm habit).
    managers: () => [
      { nodeId: state.nodeId, address: advertised() },
      ...manager.store
        .list('node')
        .filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER && n.meta?.id !== state.nodeId && n.addresses[0])
        .map((n) => ({
          nodeId: n.meta?.id ?? '',
          address: joinHostPort(n.addresses[0]!, port()),
        })),
    ],
  });
  const follow = (leading: boolean) => (leading ? dispatcher.start() : dispatcher.stop());
  const unfollow = manager.onLeadershipChange(follow);
  if (manager.isLeader()) dispatcher.start();
  stops.push(async () => {
    unfollow();
    dispatcher.stop();
  });
  let listenPort = 0;
  const advertised = () =>
    cfg.advertiseAddress.endsWith(':0')
      ? `${cfg.advertiseAddress.slice(0, -2)}:${listenPort}`
      : cfg.advertiseAddress;
  // Task logs: agents listen and publish where their session is (the leader); see controlplane/logbroker.
  const logBroker = new LogBroker({ store: manager.replica() });
  logBroker.start();
  stops.push(async () => logBroker.stop());
  const isLeader = () => manager.isLeader();
  const extraPolicy = { ...DISPATCHER_POLICY, ...MEMBERSHIP_POLICY, ...LOG_BROKER_POLICY, ...LOGS_POLICY };
  const tcp = createCaServer(ca, { extraPolicy });
  tcp.addService(DispatcherServiceService, dispatcher.implementation());
  tcp.addService(LogBrokerServiceService, logBroker.brokerImplementation());
  tcp.addService(LogsServiceService, leaderOnlyLogsService(logBroker, { isLeader }));
  addMembershipService(tcp, manager);
  stops.push(() => shutdown(tcp));
  const tcpCredentials = new ReloadableServerCredentials(material, { acceptClientsWithoutCertificate: true });
  listenPort = await bindSecure(tcp, cfg.listenAddress, tcpCredentials);
  const local = new grpc.Server();
  addControlService(local, new ControlApi(manager));
  local.addService(
    LogsServiceService,
    localLogsService(logBroker, {
      isLeader,
      leaderAddress: leaderTcpAddress,
      credentials: () =>
        createChannelCredentials(material, {
          clusterId: state.clusterId,
          organizationalUnit: roleToOu('manager'),
        }),
    }),
  );
  addDiagService(local, diag);
  local.addService(CAServiceService, createCaServiceHandlers(ca));
  stops.push(async () => {
    await shutdown(local);
    rmSync(cfg.socketPath, { force: true });
  });
  await bindUnixSocket(local, cfg.socketPath, cfg.socketGroup);
  const port = () => splitHostPort(advertised()).port;
  return {
    manager,
    ca,
    listenPort,
    reload: (m) => {
      raftCredentials.reload(m);
      tcpCredentials.reload(m);
      manager.raft.setChannelCredentials(raftChannelCredentials(m));
    },
    otherManagerAddresses: () =>
      manager.store
        .list('node')
        .filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER && n.meta?.id !== state.nodeId && n.addresses[0])
        .map((n) => joinHostPort(n.addresses[0]!, port())),
    leaveAndStop: async () => {
      // The leader removes a member whose Node turned worker; stopping first
      // could leave the rest without a quorum to commit that removal. A
      // demoted leader hands leadership over first (see leaveRaft).
      if (!(await manager.leaveRaft(15_000)))
        log.warn('still a Raft member 15 s after demotion; stopping anyway');
      await stopAll();
    },
    stop: stopAll,
  };
}

/** Period of the data plane's drift-repairing resync in `meshd run` (as `meshd dataplane run`). */
const RESYNC_INTERVAL_MS = 30_000;

async function startAgent(
  cfg: DaemonConfig,
  state: LocalNode,
  material: ReturnType<typeof loadNodeTlsMaterial>,
  stops: (() => Promise<void>)[],
): Promise<Agent> {
  const dataplane: DataplaneTarget[] = [];
  if (cfg.dataPlane === 'kernel') {
    let networkIds: string[] = [];
    const node = await selectNodeDataplane({
      hostPrefix: cfg.netnsPrefix,
      networkIds: () => networkIds,
      lbBackendChoice: cfg.lbBackend,
    });
    logLbBackend(node.lbBackend);
    const recordApplied = appliedStateRecorder(cfg.stateDir, (err) =>
      log.warn({ err: errorMessage(err) }, 'cannot record the applied data-plane state'),
    );
    dataplane.push({
      name: 'reconciler',
      apply: async (desired, progress) => {
        networkIds = desired.networks.map((n) => n.id);
        // Tasks start once their sandboxes exist; the LB and health ports follow.
        const result = await node.reconciler.apply(desired, {
          onProgrammed: (programmer) => {
            if (programmer === SANDBOX_PROGRAMMER) progress.ready('all');
          },
        });
        // For `meshd dataplane dump` (desired vs programmed) on this host.
        recordApplied(desired);
        return result;
      },
      view: () => node.reconciler.view(),
    });
    stops.push(() => node.close());
    // The agent leaves a failed or partial apply to this: re-read the kernel and
    // repair drift (seen in the VM lab: a worker's ingress IPVS services missing).
    const stopResync = node.reconciler.startPeriodicResync(systemClock, RESYNC_INTERVAL_MS);
    stops.push(async () => stopResync());
    // One resolver for every task sandbox on this node (127.0.0.11 inside each);
    // it follows the same desired state, after the reconciler made the sandboxes.
    const dns = new EmbeddedDns({ registry: new Registry(), hostPrefix: cfg.netnsPrefix });
    dataplane.push({
      name: 'dns',
      // A task waits for its own sandbox's 127.0.0.11 only, not for other tasks' sockets.
      apply: (desired, progress) => dns.apply(desired, (taskId) => progress.ready([taskId])),
      view: async () => ({ attached: dns.attachedTaskIds() }),
    });
    stops.push(async () => dns.close());
  }
  const managers = [
    ...new Set([...(state.role === 'manager' ? [cfg.advertiseAddress] : []), ...(state.managers ?? [])]),
  ];
  const agent = new Agent({
    managers,
    credentials: () =>
      createChannelCredentials(material, {
        clusterId: state.clusterId,
        organizationalUnit: roleToOu('manager'),
      }),
    describe: () => ({
      hostname: cfg.hostname,
      addresses: [hostOf(cfg.advertiseAddress)],
      resources: undefined,
      labels: {},
    }),
    dataplane,
    hostPrefix: cfg.dataPlane === 'kernel' ? cfg.netnsPrefix : null,
    logDir: paths(cfg.stateDir).logs,
  });
  agent.start();
  stops.push(() => agent.stop({ stopTasks: true }));
  return agent;
}

/** A worker's local socket serves `meshctl diag` only (the control API lives on managers); resolves to its stop. */
async function serveWorkerSocket(cfg: DaemonConfig, diag: DiagSources): Promise<() => Promise<void>> {
  const local = new grpc.Server();
  addDiagService(local, diag);
  await bindUnixSocket(local, cfg.socketPath, cfg.socketGroup);
  return async () => {
    await shutdown(local);
    rmSync(cfg.socketPath, { force: true });
  };
}

const MEMBERSHIP_POLICY = servicePolicy(RaftMembershipServiceService, {
  joinRaft: 'manager',
  leaveRaft: 'manager',
});

/** How long `meshd run` of a joining manager waits for its promotion from learner to voter. */
const JOIN_VOTER_WAIT_MS = 60_000;

/** A joined manager asks the founder (then whoever it names as leader) to make it a Raft member. */
async function joinRaft(
  manager: ManagerNode,
  state: LocalNode,
  cfg: DaemonConfig,
  material: ReturnType<typeof loadNodeTlsMaterial>,
): Promise<void> {
  const raftAddress = joinHostPort(hostOf(cfg.advertiseAddress), manager.raft.port());
  const creds = createChannelCredentials(material, {
    clusterId: state.clusterId,
    organizationalUnit: roleToOu('manager'),
  });
  let target = state.managers?.[0];
  for (let attempt = 0; target !== undefined && attempt < 5; attempt++) {
    const client = new RaftMembershipServiceClient(target, creds, SECURE_CHANNEL_OPTIONS);
    try {
      const res = await new Promise<JoinRaftResponse>((resolve, reject) =>
        client.joinRaft({ raftAddress }, new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (err, r) =>
          err === null ? resolve(r) : reject(err),
        ),
      );
      for (const m of res.members)
        if (m.nodeId !== state.nodeId) manager.raft.addPeer(m.nodeId, m.raftAddress);
      // JoinRaft made this node a learner; the leader promotes it once its log caught up.
      try {
        await manager.waitForVoter(state.nodeId, JOIN_VOTER_WAIT_MS);
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'joined Raft as a learner; still catching up, going on');
      }
      return;
    } catch (err) {
      const leader = (err as grpc.ServiceError).metadata?.get(LEADER_NODE_ADDRESS_METADATA_KEY)[0];
      if (typeof leader !== 'string') throw err;
      // The leader's node address is a bare host; managers listen on one port.
      target = joinHostPort(leader, splitHostPort(target).port);
    } finally {
      client.close();
    }
  }
  throw new MeshError(
    'RAFT_JOIN_FAILED',
    'could not reach the Raft leader to join as a manager: is the first manager running?',
  );
}

async function bootstrapStore(
  manager: ManagerNode,
  state: LocalNode,
  cfg: DaemonConfig,
  material: ReturnType<typeof loadNodeTlsMaterial>,
): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!manager.isLeader()) {
    if (Date.now() > deadline)
      throw new MeshError('NO_LEADER', 'this founding manager did not become Raft leader within 30 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  await manager.linearizableRead();
  if (manager.store.list('cluster').length > 0) return;
  const now = systemClock.nowMs();
  // The CA state goes into the store with the cluster; the root files in
  // <state-dir>/ca stay as the founder's copy.
  const caDir = paths(cfg.stateDir).ca;
  const external = loadExternalCa(caDir);
  const root =
    external === undefined
      ? await loadRootCAFromDir(caDir)
      : loadRootCertificate(readFileSync(join(caDir, 'root.crt'), 'utf8'));
  const founderCert = certificateObject({
    nodeId: state.nodeId,
    role: 'manager',
    notAfterMs: certificateValidity(material.certChainPem).notAfterMs,
    rootDigestHex: root.digestHex,
    removed: false,
  });
  const tx = bootstrapCluster({ nowMs: now, clusterId: state.clusterId, ingressNetworkId: newId() })
    .create('ca', authorityObject(state.clusterId, { ...inMemoryStateFor(root).authority()!, external }))
    .create('certificate', founderCert)
    .create(
      'node',
      Node.fromPartial({
        meta: { id: state.nodeId },
        hostname: cfg.hostname,
        role: NodeRole.NODE_ROLE_MANAGER,
        availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
        addresses: [hostOf(cfg.advertiseAddress)],
        state: NodeState.NODE_STATE_READY,
        stateChangedAt: { unixMs: now },
      }),
    );
  await manager.proposer.propose(tx.build());
}

async function bindUnixSocket(server: grpc.Server, socketPath: string, group: string): Promise<void> {
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
  // A socket file left by a killed meshd would make the bind fail.
  rmSync(socketPath, { force: true });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err === null ? resolve() : reject(err),
    ),
  );
  chmodSync(socketPath, 0o660);
  const gid = groupId(group);
  if (gid !== undefined) chownSync(socketPath, process.getuid?.() ?? 0, gid);
  else log.warn({ group }, 'socket group does not exist; only root (the owner) can use meshctl here');
}

function groupId(group: string): number | undefined {
  try {
    const line = execFileSync('getent', ['group', group], { encoding: 'utf8' });
    const gid = Number(line.split(':')[2]);
    return Number.isInteger(gid) ? gid : undefined;
  } catch {
    return undefined;
  }
}

function shutdown(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 5000);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * `meshd join`: certificate from a manager's CA with the token (the token
 * decides the role). Raft membership for a joining manager and the worker's
 * agent start at `run` once they are wired (see README Status).
 */
export async function joinNode(cfg: DaemonConfig, managerAddress: string, token: string): Promise<LocalNode> {
  const p = paths(cfg.stateDir);
  if (existsSync(p.node))
    throw new MeshError(
      'ALREADY_INITIALIZED',
      `${cfg.stateDir} already holds a node: run "meshd leave" first, or remove ${cfg.stateDir}`,
    );
  const cert = await joinCluster({
    target: managerAddress,
    token,
    addresses: [hostOf(cfg.advertiseAddress)],
  });
  for (const dir of [p.tls, p.raft, p.logs]) mkdirSync(dir, { recursive: true, mode: 0o700 });
  saveNodeTlsMaterial(p.tls, cert.material);
  const state: LocalNode = {
    nodeId: cert.nodeId,
    clusterId: cert.clusterId,
    role: cert.role,
    founder: false,
    bootstrapped: true,
    managers: [managerAddress],
  };
  writeNodeState(cfg.stateDir, state);
  return state;
}

/**
 * `meshd leave`: forget this host's membership (state dir). `--force` is
 * needed for a manager, which first asks the other managers (read from its
 * stopped replica) to take it out of the Raft voters (LeaveRaft). Returns
 * warnings for the operator (a manager that could not leave Raft cleanly).
 */
export async function leaveNode(cfg: DaemonConfig, force: boolean): Promise<string[]> {
  const state = readNodeState(cfg.stateDir);
  if (state.role === 'manager' && !force)
    throw new MeshError(
      'MANAGER_LEAVE',
      'this node is a manager: demote it first ("meshctl node demote"), or use --force (the mesh may lose quorum)',
    );
  if (existsSync(cfg.socketPath)) {
    if (await socketAnswers(cfg.socketPath))
      throw new MeshError('DAEMON_RUNNING', `meshd runs here (${cfg.socketPath} answers): stop it first`);
    // Left by a meshd killed with SIGKILL: nothing listens on it any more.
    rmSync(cfg.socketPath, { force: true });
  }
  const warnings: string[] = [];
  if (state.role === 'manager') {
    try {
      await leaveRaft(cfg, state);
    } catch (err) {
      warnings.push(
        `could not leave the Raft voters (${errorMessage(err)}); remove this node from another manager with "meshctl node demote ${state.nodeId}"`,
      );
    }
  }
  rmSync(cfg.stateDir, { recursive: true, force: true });
  return warnings;
}

/** True when something accepts connections on the Unix socket; a refused connect means a stale file. */
function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = connect(socketPath);
    const done = (answers: boolean) => {
      clearTimeout(timer);
      conn.destroy();
      resolve(answers);
    };
    // A daemon too busy to accept within 2 s is still a daemon: refuse to leave.
    const timer = setTimeout(() => done(true), 2_000);
    conn.once('connect', () => done(true));
    conn.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'),
    );
  });
}

/**
 * The leader retires the old root once every node renewed from the new one
 * (`meshctl ca --rotate` starts a rotation and may go away). Returns the stop.
 */
function finishRootRotations(manager: ManagerNode, ca: CertificateAuthority): () => Promise<void> {
  let busy = false;
  const timer = setInterval(() => {
    if (busy || !manager.isLeader()) return;
    busy = true;
    ca.finishRootRotationIfDone()
      .then((done) => {
        if (done) log.info('root rotation finished: every node renewed; the old root is retired');
      })
      .catch((err: unknown) =>
        log.warn({ err: errorMessage(err) }, 'retiring the old root failed; will retry'),
      )
      .finally(() => {
        busy = false;
      });
  }, ROOT_ROTATION_CHECK_MS);
  timer.unref();
  return async () => clearInterval(timer);
}

/** Asks the other managers, following leader hints, to remove this node from the Raft voters. */
async function leaveRaft(cfg: DaemonConfig, state: LocalNode): Promise<void> {
  const p = paths(cfg.stateDir);
  const replica = await readReplicaOffline(p.raft);
  const port = splitHostPort(cfg.listenAddress).port;
  const targets = [
    ...new Set([
      ...otherManagerHosts(replica, state.nodeId).map((h) => joinHostPort(h, port)),
      ...(state.managers ?? []),
    ]),
  ];
  if (targets.length === 0) throw new MeshError('RAFT_LEAVE_FAILED', 'no other manager is known');
  const creds = createChannelCredentials(loadNodeTlsMaterial(p.tls), {
    clusterId: state.clusterId,
    organizationalUnit: roleToOu('manager'),
  });
  let lastError: unknown;
  // Each manager once, plus the leaders they name (tried next).
  for (let attempt = 0; attempt < 6 && targets.length > 0; attempt++) {
    const target = targets.shift()!;
    const client = new RaftMembershipServiceClient(target, creds, SECURE_CHANNEL_OPTIONS);
    try {
      await new Promise<void>((resolve, reject) =>
        client.leaveRaft({}, new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (err) =>
          err === null ? resolve() : reject(err),
        ),
      );
      return;
    } catch (err) {
      lastError = err;
      const leader = (err as grpc.ServiceError).metadata?.get(LEADER_NODE_ADDRESS_METADATA_KEY)[0];
      if (typeof leader === 'string' && leader !== '') targets.unshift(joinHostPort(leader, port));
    } finally {
      client.close();
    }
  }
  throw lastError;
}
