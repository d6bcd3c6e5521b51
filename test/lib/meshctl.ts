import { runMeshctl } from '../../src/meshctl/cli.js';
import { connectSocket } from '../../src/meshctl/client.js';

/** Runs meshctl in this process against a daemon's socket; resolves its exit code and output. */
export async function meshctl(
  socket: string,
  ...argv: string[]
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runMeshctl(['--socket', socket, ...argv], {
    output: { out: (l) => out.push(l), err: (l) => err.push(l) },
    connect: connectSocket,
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    nowMs: () => Date.now(),
    runMeshd: async () => 0,
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}
