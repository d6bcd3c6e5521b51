import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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

interface ServedDriver {
  dir: string;
  seq: number;
  started: Promise<void>;
}

/** One served driver per lab VM (see guest/driver.ts `serve`), started by the first call. */
const drivers = new WeakMap<VmLab, Map<string, ServedDriver>>();

function servedDriver(lab: VmLab, vm: string, timeoutMs: number): ServedDriver {
  let perVm = drivers.get(lab);
  if (perVm === undefined) {
    perVm = new Map();
    drivers.set(lab, perVm);
  }
  const known = perVm.get(vm);
  if (known !== undefined) return known;
  const dir = join(BUNDLE_DIR, `driver-${lab.name}-${process.pid}`, vm);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  process.once('exit', () => rmSync(dirname(dir), { recursive: true, force: true }));
  const started = (async () => {
    driverPath ??= await bundleProgram(join(ROOT, 'test/vm/guest/driver.ts'), 'driver');
    await lab.run(
      vm,
      `(MESHD_TEST=1 setsid node ${driverPath} serve ${dir} > ${dir}/log 2>&1 < /dev/null &)`,
    );
    await waitForFile(join(dir, 'ready'), timeoutMs, () => `driver on ${vm} did not start`, dir);
  })();
  const driver: ServedDriver = { dir, seq: 0, started };
  perVm.set(vm, driver);
  return driver;
}

async function waitForFile(path: string, timeoutMs: number, what: () => string, dir: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) {
      const log = join(dir, 'log');
      const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-20).join('\n') : '(no log)';
      throw new Error(`${what()} within ${timeoutMs} ms; driver log tail:\n${tail}`);
    }
    await sleep(50);
  }
}

/**
 * Runs `steps` on `vm` and returns one result per step. The steps run in
 * the VM's one driver process (started by the first call, kept for the
 * file: a node start costs ~10 s under emulation on a loaded host), each
 * list as if in a fresh process.
 */
export async function runGuestSteps(
  lab: VmLab,
  vm: string,
  steps: GuestStep[],
  timeoutMs = 120_000,
): Promise<GuestResult[]> {
  const driver = servedDriver(lab, vm, timeoutMs);
  await driver.started;
  const seq = ++driver.seq;
  const cmd = join(driver.dir, `cmd-${seq}.json`);
  writeFileSync(`${cmd}.tmp`, JSON.stringify(steps));
  renameSync(`${cmd}.tmp`, cmd);
  const res = join(driver.dir, `res-${seq}.json`);
  await waitForFile(res, timeoutMs, () => `driver on ${vm}: no results for step list ${seq}`, driver.dir);
  const results = JSON.parse(readFileSync(res, 'utf8')) as GuestResult[];
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
