import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import type { VmLab } from '../../scripts/vmlab/lab.js';
import type { GuestResult, GuestStep } from './guest/driver.js';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const BUNDLE_DIR = join(ROOT, '.state', 'vm-bundles');

/**
 * Bundles a guest program into one ESM file inside the checkout (guests see
 * the checkout at the same path). Packages stay external and load from
 * node_modules: the netlink addon must, and tsx's on-the-fly compile costs
 * ~10 s per start under emulation.
 */
export async function bundleForGuest(entry: string, name: string): Promise<string> {
  mkdirSync(BUNDLE_DIR, { recursive: true });
  const outfile = join(BUNDLE_DIR, `${name}-${process.pid}.mjs`);
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'error',
  });
  process.once('exit', () => rmSync(outfile, { force: true }));
  return outfile;
}

let driverPath: string | undefined;

/** Runs `steps` in one node process on `vm` and returns one result per step. */
export async function runGuestSteps(
  lab: VmLab,
  vm: string,
  steps: GuestStep[],
  timeoutMs = 120_000,
): Promise<GuestResult[]> {
  driverPath ??= await bundleForGuest(join(ROOT, 'test/vm/guest/driver.ts'), 'driver');
  const input = JSON.stringify(steps).replace(/'/g, `'\\''`);
  const out = await lab.run(
    vm,
    `printf '%s' '${input}' > /tmp/steps.json && MESHD_TEST=1 node ${driverPath} /tmp/steps.json`,
    {
      timeoutMs,
    },
  );
  // The results are the last line; anything before it is logging.
  const lines = out.trim().split('\n');
  const results = JSON.parse(lines[lines.length - 1] ?? '[]') as GuestResult[];
  if (results.length !== steps.length)
    throw new Error(`guest returned ${results.length} results for ${steps.length} steps`);
  return results;
}

/** The value of a step that must have succeeded. */
export function ok<T>(result: GuestResult | undefined, what: string): T {
  if (result === undefined) throw new Error(`${what}: no result`);
  if (!result.ok) throw new Error(`${what}: ${result.code} ${result.message}`);
  return result.value as T;
}
