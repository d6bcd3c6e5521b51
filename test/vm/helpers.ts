import { mkdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';
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
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    metafile: true,
    logLevel: 'error',
  });
  process.once('exit', () => rmSync(outfile, { force: true }));
  // External packages load before any bundled module runs, so the CA's
  // polyfill would come after the x509 library that needs it: the program
  // would die at start inside the guest. Say so here, on the host.
  const shim = Object.keys(result.metafile.inputs).find((input) => input.endsWith(CA_SHIM));
  if (shim !== undefined)
    throw new Error(
      `${entry} imports the CA's x509 library (through ${shim}); with packages external it cannot load. ` +
        'Bundle it with bundleProgram, or keep the CA out of its imports.',
    );
  return outfile;
}

const CA_SHIM = 'controlplane/ca/reflect-metadata-shim.ts';

/**
 * Keeps each module's own `import.meta.url` in a bundle: code that finds files
 * next to itself (the netns and IPVS helpers' entries, the project root) then
 * finds them in the checkout, wherever the bundle is written.
 */
const moduleUrls: Plugin = {
  name: 'module-urls',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      if (args.path.includes('/node_modules/')) return undefined;
      const text = await readFile(args.path, 'utf8');
      const url = JSON.stringify(pathToFileURL(args.path).href);
      return { contents: text.replaceAll('import.meta.url', url), loader: 'ts' };
    });
  },
};

/**
 * Bundles a whole program, packages included (only the netlink addon stays
 * external): node then reads one file instead of hundreds over 9p, which
 * takes meshd's start in a guest from ~30 s to ~5 s under emulation. The
 * file is removed when this process exits.
 */
export async function bundleProgram(entry: string, name: string): Promise<string> {
  mkdirSync(BUNDLE_DIR, { recursive: true });
  const outfile = join(BUNDLE_DIR, `${name}-${process.pid}.mjs`);
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['netlink'],
    // CommonJS packages inside an ESM bundle still call require().
    banner: {
      js: "import { createRequire as __meshdRequire } from 'node:module'; const require = __meshdRequire(import.meta.url);",
    },
    plugins: [moduleUrls],
    outfile,
    logLevel: 'error',
  });
  process.once('exit', () => rmSync(outfile, { force: true }));
  return outfile;
}

const STARTED_MS = Date.now();

/**
 * With MESHD_VM_TIMING=1, prints how far into the file a setup step ended
 * (VM boot, bundles, guest start, convergence): where the tier's minutes go.
 */
export function phase(what: string): void {
  if (process.env['MESHD_VM_TIMING'] !== '1') return;
  process.stderr.write(`[vm-timing] ${((Date.now() - STARTED_MS) / 1000).toFixed(1)} s: ${what}\n`);
}

let driverPath: string | undefined;

/** Runs `steps` in one node process on `vm` and returns one result per step. */
export async function runGuestSteps(
  lab: VmLab,
  vm: string,
  steps: GuestStep[],
  timeoutMs = 120_000,
): Promise<GuestResult[]> {
  driverPath ??= await bundleProgram(join(ROOT, 'test/vm/guest/driver.ts'), 'driver');
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
