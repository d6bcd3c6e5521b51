// Runs inside a lab VM (bundled by the host, see ../helpers.ts): one meshd
// "host" of the data-plane acceptance mesh. It builds the node's data plane the
// way `meshd run` does (selectNodeDataplane with lb-backend auto, health ports
// on every address) and then serves commands the host test drops into DIR as
// cmd-N.json, answering each with res-N.json. One node process for the whole
// run, because node starts in seconds under emulation. It exits on `stop`, or
// by itself after MAX_LIFETIME_MS so that nothing outlives a killed test.
//
//   node mesh-node.mjs DIR HOST_PREFIX IPVS_HELPER_BUNDLE NETNS_HELPER_BUNDLE
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { selectNodeDataplane } from '../../../dataplane/reconciler/node.js';
import { DesiredState } from '../../../src/api/gen/meshd/v1/dataplane.js';
import { errorMessage, MeshError, ValidationError } from '../../../src/common/errors.js';

export type MeshNodeCommand =
  | { op: 'apply'; state: unknown }
  | { op: 'resync' }
  | { op: 'view' }
  | { op: 'status' }
  | { op: 'metrics' }
  | { op: 'stop' };

export type MeshNodeReply =
  | { ok: true; value: unknown }
  | { ok: false; code: string; field: string | null; message: string };

const MAX_LIFETIME_MS = 10 * 60_000;
const POLL_MS = 50;

function writeAtomically(path: string, value: unknown): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(value));
  renameSync(`${path}.tmp`, path);
}

async function main(): Promise<void> {
  const [dir, hostPrefix, ipvsHelper, netnsHelper] = process.argv.slice(2);
  if (dir === undefined || hostPrefix === undefined || ipvsHelper === undefined || netnsHelper === undefined)
    throw new Error('usage: mesh-node DIR HOST_PREFIX IPVS_HELPER_BUNDLE NETNS_HELPER_BUNDLE');
  let networkIds: string[] = [];
  const node = await selectNodeDataplane({
    hostPrefix,
    networkIds: () => networkIds,
    lbBackendChoice: 'auto',
    ipvsHelperCommand: [process.execPath, ipvsHelper],
    netnsHelperCommand: [process.execPath, netnsHelper],
  });
  if (process.env['MESHD_VM_TIMING'] === '1') timePrograms(node.reconciler);
  const run = async (cmd: MeshNodeCommand): Promise<unknown> => {
    switch (cmd.op) {
      case 'apply': {
        const state = DesiredState.fromJSON(cmd.state);
        networkIds = state.networks.map((n) => n.id);
        return node.reconciler.apply(state);
      }
      case 'resync':
        return node.reconciler.resync();
      case 'view':
        return node.reconciler.view();
      case 'status':
        return node.reconciler.status();
      case 'metrics':
        return node.reconciler.registry.metrics();
      case 'stop':
        return null;
    }
  };
  writeAtomically(join(dir, 'ready.json'), { lbBackend: node.lbBackend, pid: process.pid });
  const deadline = Date.now() + MAX_LIFETIME_MS;
  try {
    for (let seq = 1; Date.now() < deadline; seq++) {
      const path = join(dir, `cmd-${seq}.json`);
      while (!existsSync(path) && Date.now() < deadline) await sleep(POLL_MS);
      if (!existsSync(path)) break;
      const cmd = JSON.parse(readFileSync(path, 'utf8')) as MeshNodeCommand;
      let reply: MeshNodeReply;
      try {
        reply = { ok: true, value: (await run(cmd)) ?? null };
      } catch (err) {
        reply = {
          ok: false,
          code: err instanceof MeshError ? err.code : 'ERROR',
          field: err instanceof ValidationError ? err.field : null,
          message: errorMessage(err),
        };
      }
      writeAtomically(join(dir, `res-${seq}.json`), reply);
      if (cmd.op === 'stop') break;
    }
  } finally {
    await node.close();
  }
}

/**
 * MESHD_VM_TIMING=1: each programmer's dump and apply print their duration to
 * stderr (the node's log), to find where a guest's minutes go.
 */
function timePrograms(reconciler: unknown): void {
  const programmers = (reconciler as { programmers?: Record<string, unknown>[] }).programmers ?? [];
  for (const p of programmers) {
    for (const method of ['dump', 'apply'] as const) {
      const original = p[method];
      if (typeof original !== 'function') continue;
      p[method] = async (...args: unknown[]) => {
        const startedMs = performance.now();
        try {
          return await original.apply(p, args);
        } finally {
          const ms = (performance.now() - startedMs).toFixed(0);
          process.stderr.write(
            `[guest-timing] ${new Date().toISOString()} ${String(p['name'])}.${method} ${ms} ms\n`,
          );
        }
      };
    }
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`mesh-node: ${errorMessage(err)}\n`);
    process.exit(1);
  },
);
