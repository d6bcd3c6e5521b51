// npm run sim -- NAME --seeds N [--first F] [--seed S] [--json]
//
// Runs seeds F..F+N-1 (F defaults to 1) or the single seed S, and prints the
// number of seeds, steps and violations. Exits 1 when any seed violates an
// invariant, printing the command that replays it.
import { chooseModule, createReporter, parseFlags } from '../lib/report.js';
import type { Simulation } from './types.js';

const here = new URL('.', import.meta.url).pathname;
const { positional, flags } = parseFlags(process.argv.slice(2));
const name = chooseModule(here, positional[0], 'npm run sim -- NAME --seeds N [--seed S] [--json]');

function intFlag(key: string, fallback: number): number {
  const raw = flags.get(key);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${key} must be a non-negative integer, got "${String(raw)}"`);
    process.exit(2);
  }
  return n;
}

const mod = (await import(`./${name}.ts`)) as { default: Simulation };
const json = flags.get('json') === true;
const seeds = flags.has('seed') ? [intFlag('seed', 0)] : range(intFlag('first', 1), intFlag('seeds', 100));
const reporter = createReporter('sim', name, json);
let steps = 0;
const failing: { seed: number; violations: string[] }[] = [];
for (const seed of seeds) {
  const result = mod.default.runSeed(seed, flags);
  steps += result.steps;
  if (result.violations.length > 0) failing.push({ seed, violations: result.violations });
}
const violations = failing.reduce((n, f) => n + f.violations.length, 0);
reporter.report({ metric: 'seeds', value: seeds.length, unit: 'count' });
reporter.report({ metric: 'steps', value: steps, unit: 'count' });
reporter.report({ metric: 'violations', value: violations, unit: 'count' });
reporter.finish();
for (const f of failing) {
  console.error(`seed ${f.seed}: ${f.violations.length} violation(s); first: ${f.violations[0]}`);
  console.error(`  replay: npm run sim -- ${name} --seed ${f.seed}`);
}
process.exit(failing.length > 0 ? 1 : 0);

function range(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}
