/**
 * Run inside a lab host's namespace (nsenter) by the CA integration tests;
 * prints one JSON array, one answer per target, in order:
 *   probe-ca.ts status STATE_DIR HOST:PORT...  this node's certificate status,
 *     asked with its own certificate: {"state": N} or {"code": C, "details": "..."}
 *   probe-ca.ts join TOKEN HOST:PORT...  a join attempt with TOKEN (nothing saved):
 *     {"role": "worker"} or {"code": C, "details": "..."}
 * One process for several managers: each process start costs seconds on a loaded host.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { joinCluster } from '../../../controlplane/ca/ca-client.js';
import { loadNodeTlsMaterial } from '../../../controlplane/ca/node-identity.js';
import { CAServiceClient } from '../../../src/api/gen/meshd/v1/ca.js';
import { errorMessage } from '../../../src/common/errors.js';
import {
  createChannelCredentials,
  SECURE_CHANNEL_OPTIONS,
} from '../../../src/common/transport/credentials.js';

type Answer = { state?: number; role?: string; code?: number | string; details?: string };

function status(stateDir: string, target: string): Promise<Answer> {
  const node = JSON.parse(readFileSync(join(stateDir, 'node.json'), 'utf8')) as {
    nodeId: string;
    clusterId: string;
  };
  const material = loadNodeTlsMaterial(join(stateDir, 'tls'));
  const client = new CAServiceClient(
    target,
    createChannelCredentials(material, { clusterId: node.clusterId }),
    SECURE_CHANNEL_OPTIONS,
  );
  return new Promise((resolve) =>
    client.nodeCertificateStatus(
      { nodeId: node.nodeId },
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (err, res) => {
        client.close();
        resolve(err === null ? { state: res.state } : { code: err.code, details: err.details });
      },
    ),
  );
}

async function joinWith(token: string, target: string): Promise<Answer> {
  try {
    return { role: (await joinCluster({ target, token, addresses: [] })).role };
  } catch (err) {
    const e = err as Partial<grpc.ServiceError> & { code?: number | string };
    return { code: e.code ?? 'error', details: e.details ?? errorMessage(err) };
  }
}

const [mode, arg, ...targets] = process.argv.slice(2);
if ((mode !== 'status' && mode !== 'join') || arg === undefined || targets.length === 0) {
  process.stderr.write('usage: probe-ca.ts status STATE_DIR HOST:PORT... | join TOKEN HOST:PORT...\n');
  process.exit(2);
}
const answers: Answer[] = [];
for (const t of targets) answers.push(await (mode === 'status' ? status(arg, t) : joinWith(arg, t)));
process.stdout.write(`${JSON.stringify(answers)}\n`);
