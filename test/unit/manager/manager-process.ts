/**
 * One manager as an OS process for the kill -9 test: a ManagerNode (Raft
 * over mTLS, WAL in `dataDir`) and ControlService over mTLS, both on
 * 127.0.0.1 with OS-chosen ports. Config in MESHD_MANAGER_CONFIG (JSON).
 * Prints {"raftPort","apiPort"} once up; stdin takes JSON lines:
 *   {"op":"peers","peers":{"m2":"127.0.0.1:4000"}}
 *   {"op":"status"}     → {"leader":true|false}
 *   {"op":"bootstrap"}  → cluster object, ingress and two ready workers; {"bootstrapped":true}
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { bootstrapCluster } from '../../../controlplane/allocator/config.js';
import { ControlApi } from '../../../controlplane/controlapi/control-api.js';
import { addControlService } from '../../../controlplane/controlapi/grpc-service.js';
import { ManagerNode } from '../../../controlplane/manager/manager-node.js';
import { Node, NodeAvailability, NodeRole, NodeState } from '../../../src/api/gen/meshd/v1/objects.js';
import { errorMessage } from '../../../src/common/errors.js';

interface Config {
  id: string;
  dataDir: string;
  voters: string[];
  caFile: string;
  certFile: string;
  keyFile: string;
}

const cfg = JSON.parse(process.env['MESHD_MANAGER_CONFIG'] ?? '{}') as Config;
const ca = readFileSync(cfg.caFile);
const cert = readFileSync(cfg.certFile);
const key = readFileSync(cfg.keyFile);
const serverCreds = () => ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], true);
const out = (obj: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const manager = await ManagerNode.start({
  id: cfg.id,
  dataDir: cfg.dataDir,
  listenAddress: '127.0.0.1:0',
  serverCredentials: serverCreds(),
  channelCredentials: credentials.createSsl(ca, key, cert),
  peers: {},
  bootstrap: { voters: cfg.voters, learners: [] },
  heartbeatMs: 50,
  electionMs: 500,
});
const server = new Server();
addControlService(server, new ControlApi(manager));
const apiPort = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', serverCreds(), (err, port) => (err ? reject(err) : resolve(port))),
);
out({ raftPort: manager.raft.port(), apiPort });

for await (const line of createInterface({ input: process.stdin })) {
  try {
    const cmd = JSON.parse(line) as { op: string; peers?: Record<string, string> };
    if (cmd.op === 'peers')
      for (const [id, addr] of Object.entries(cmd.peers ?? {})) manager.raft.addPeer(id, addr);
    else if (cmd.op === 'status') out({ leader: manager.isLeader() });
    else if (cmd.op === 'bootstrap') {
      const now = Date.now();
      const tx = bootstrapCluster({ nowMs: now, clusterId: 'c1', ingressNetworkId: 'ingress1' });
      for (const id of ['w1', 'w2'])
        tx.create(
          'node',
          Node.fromPartial({
            meta: { id },
            hostname: id,
            role: NodeRole.NODE_ROLE_WORKER,
            state: NodeState.NODE_STATE_READY,
            stateChangedAt: { unixMs: now },
            availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE,
            resources: { nanoCpus: 8e9, memoryBytes: 8e9 },
          }),
        );
      await manager.proposer.propose(tx.build());
      out({ bootstrapped: true });
    }
  } catch (err) {
    out({ error: errorMessage(err) });
  }
}
