// A node process for the root-rotation test: serves the echo service over
// mTLS and calls its peers continuously, counting every failed call. The test
// drives it over IPC: init, peers, update (new TLS material), stats, stop.
import * as grpc from '@grpc/grpc-js';
import {
  callerIdentity,
  createAuthorizationInterceptor,
  servicePolicy,
} from '../../../src/common/transport/authorization.js';
import {
  bindSecure,
  createChannelCredentials,
  ReloadableServerCredentials,
  SECURE_CHANNEL_OPTIONS,
  type TlsMaterial,
} from '../../../src/common/transport/credentials.js';
import { EchoClient, echoAccess, echoHandlers, echoService, unaryCall } from '../transport/fixtures.js';

type Command =
  | { type: 'init'; clusterId: string; material: TlsMaterial }
  | { type: 'peers'; ports: number[] }
  | { type: 'update'; material: TlsMaterial }
  | { type: 'stats' }
  | { type: 'stop' };

const ROUND_MS = 20;
const MAX_ROUNDS = 3000; // bounds the loop (60 s) should the test never say stop
const FRESH_CHANNEL_EVERY = 3;

let clusterId = '';
let material: TlsMaterial;
let creds: ReloadableServerCredentials;
let server: grpc.Server;
let peers: number[] = [];
let clients = new Map<number, grpc.Client>();
let ok = 0;
let freshOk = 0;
const failures: string[] = [];
let stopped = false;

function newClient(port: number): grpc.Client {
  return new EchoClient(
    `127.0.0.1:${port}`,
    createChannelCredentials(material, { clusterId }),
    SECURE_CHANNEL_OPTIONS,
  );
}

function replaceClients(): void {
  const old = clients;
  clients = new Map(peers.map((p) => [p, newClient(p)]));
  // Let calls in flight on the old channels finish before closing them.
  setTimeout(() => {
    for (const c of old.values()) c.close();
  }, 1000);
}

async function trafficLoop(): Promise<void> {
  for (let round = 0; round < MAX_ROUNDS && !stopped; round++) {
    const calls = [...clients.entries()].map(async ([port, c]) => {
      try {
        await unaryCall(c, 'echo', { round });
        ok++;
      } catch (err) {
        failures.push(`round ${round} to :${port}: ${(err as Error).message}`);
      }
      if (round % FRESH_CHANNEL_EVERY === 0) {
        const fresh = newClient(port);
        try {
          await unaryCall(fresh, 'echo', { round, fresh: true });
          freshOk++;
        } catch (err) {
          failures.push(`round ${round} fresh channel to :${port}: ${(err as Error).message}`);
        } finally {
          fresh.close();
        }
      }
    });
    await Promise.all(calls);
    await new Promise((r) => setTimeout(r, ROUND_MS));
  }
}

process.on('message', (raw) => {
  const cmd = raw as Command;
  switch (cmd.type) {
    case 'init': {
      clusterId = cmd.clusterId;
      material = cmd.material;
      creds = new ReloadableServerCredentials(material);
      server = new grpc.Server({
        interceptors: [
          createAuthorizationInterceptor({ clusterId, policy: servicePolicy(echoService, echoAccess) }),
        ],
      });
      server.addService(
        echoService,
        echoHandlers((call) => callerIdentity(call)?.nodeId ?? null),
      );
      bindSecure(server, '127.0.0.1:0', creds).then(
        (port) => process.send?.({ type: 'port', port }),
        (err: Error) => process.send?.({ type: 'error', message: err.message }),
      );
      break;
    }
    case 'peers':
      peers = cmd.ports;
      replaceClients();
      void trafficLoop();
      process.send?.({ type: 'ack' });
      break;
    case 'update':
      material = cmd.material;
      creds.reload(material);
      replaceClients();
      process.send?.({ type: 'ack' });
      break;
    case 'stats':
      process.send?.({ type: 'stats', ok, freshOk, failures });
      break;
    case 'stop':
      stopped = true;
      for (const c of clients.values()) c.close();
      server.forceShutdown();
      process.disconnect();
      break;
  }
});
