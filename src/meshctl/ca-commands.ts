import type { Command } from 'commander';
import type { GetRootRotationResponse } from '../api/gen/meshd/v1/ca.js';
import { MeshError, ValidationError } from '../common/errors.js';
import type { CliContext } from './context.js';

const POLL_MS = 1_000;
const WAIT_MS = 10 * 60_000;

function rotating(s: GetRootRotationResponse): boolean {
  return s.nextRootDigestHex !== '';
}

export function rotationLine(s: GetRootRotationResponse): string {
  const renewed = s.nodesTotal - s.nodesPending;
  const waiting =
    s.nodesPending === 0
      ? 'retiring the old root'
      : `waiting for ${s.pendingNodeIds.join(', ')}${s.nodesPending > s.pendingNodeIds.length ? ', ...' : ''}`;
  return `root rotation: ${renewed}/${s.nodesTotal} nodes renewed (${waiting})`;
}

/**
 * `meshctl ca [--rotate]`, as `docker swarm ca`: prints the root CA
 * certificate; `--rotate` makes a new root, and waits (unless --detach) while
 * nodes renew in batches until the leader retires the old root.
 */
export function addCaCommands(program: Command, ctx: CliContext): void {
  program
    .command('ca')
    .description(
      'show the root CA certificate, or --rotate to a new root (every node renews, then the old root is retired)',
    )
    .option('--rotate', 'make a new root CA and move every node to it')
    .option('--batch-size <n>', 'nodes told to renew at a time during --rotate (default 10)')
    .option('-d, --detach', 'with --rotate: return at once; "meshctl ca" shows the progress')
    .option('-q, --quiet', 'print only the root CA certificate, not the progress')
    .action(async (opts: { rotate?: boolean; batchSize?: string; detach?: boolean; quiet?: boolean }) => {
      const ca = ctx.clients.ca;
      let batchSize = 0;
      if (opts.batchSize !== undefined) {
        batchSize = Number(opts.batchSize);
        if (!(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= 10_000))
          throw new ValidationError('batch-size', `--batch-size must be 1..10000, got "${opts.batchSize}"`);
        if (opts.rotate !== true) throw new ValidationError('batch-size', '--batch-size goes with --rotate');
      }
      let status: GetRootRotationResponse;
      if (opts.rotate === true) {
        status = (await ca.rotateRoot({ batchSize })).status!;
        if (opts.quiet !== true && ctx.format !== 'json')
          ctx.out(`Started a root rotation to sha256:${status.nextRootDigestHex.slice(0, 16)}...`);
        if (opts.detach !== true) status = await waitForRotation(ctx, opts.quiet === true);
      } else {
        status = await ca.getRootRotation({});
      }
      if (ctx.format === 'json') {
        ctx.out(
          JSON.stringify(
            {
              rootDigest: status.rootDigestHex,
              rotating: rotating(status),
              nextRootDigest: status.nextRootDigestHex,
              nodesTotal: status.nodesTotal,
              nodesPending: status.nodesPending,
              pendingNodeIds: status.pendingNodeIds,
              rootCertificatePem: status.rootCertificatePem,
            },
            null,
            2,
          ),
        );
        return;
      }
      if (rotating(status) && opts.quiet !== true) ctx.out(rotationLine(status));
      ctx.out(status.rootCertificatePem.trimEnd());
    });
}

/** Polls until the rotation is finished, printing a line when the count changes. */
async function waitForRotation(ctx: CliContext, quiet: boolean): Promise<GetRootRotationResponse> {
  const start = ctx.deps.nowMs();
  let last = '';
  for (;;) {
    const status = await ctx.clients.ca.getRootRotation({});
    if (!rotating(status)) {
      if (!quiet)
        ctx.out(
          `root rotation finished: ${status.nodesTotal} nodes on the new root; the old root is retired`,
        );
      return status;
    }
    const line = rotationLine(status);
    if (!quiet && line !== last) ctx.out(line);
    last = line;
    if (ctx.deps.nowMs() - start >= WAIT_MS)
      throw new MeshError(
        'ROTATION_NOT_FINISHED',
        `root rotation not finished after ${WAIT_MS / 60_000} min (${status.nodesPending} node(s) still on the old root); it goes on in the background. A node that is down must come back, or be removed with "meshctl node rm"`,
      );
    await ctx.deps.sleep(POLL_MS);
  }
}
