import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { runMeshctl } from './cli.js';
import { connectSocket } from './client.js';

/** meshctl entry: real socket, real clock, real stdout. */
const meshdBin = process.env['MESHD_BIN'] ?? join(dirname(fileURLToPath(import.meta.url)), '../../bin/meshd');

process.exitCode = await runMeshctl(
  process.argv.slice(2),
  {
    output: {
      out: (line) => process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
    },
    connect: connectSocket,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    nowMs: () => Date.now(),
    onInterrupt: (fn) => {
      process.on('SIGINT', fn);
      return () => process.off('SIGINT', fn);
    },
    runMeshd: async (args) => {
      const r = await execa(meshdBin, args, { stdio: 'inherit', reject: false });
      return r.exitCode ?? 1;
    },
  },
  process.env,
);
