// npm run bench -- NAME [--json] [benchmark flags]
import { existsSync, readdirSync } from 'node:fs';
import { createReporter, parseFlags } from '../lib/report.js';
import type { Benchmark } from './types.js';

const here = new URL('.', import.meta.url).pathname;
const available = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && !['main.ts', 'types.ts'].includes(f))
  .map((f) => f.slice(0, -3));

const { positional, flags } = parseFlags(process.argv.slice(2));
const name = positional[0];
if (name === undefined || !existsSync(`${here}${name}.ts`)) {
  const list = available.length > 0 ? available.join(', ') : '(none yet)';
  console.error(`usage: npm run bench -- NAME [--json]; NAME is one of: ${list}`);
  process.exit(2);
}

const mod = (await import(`./${name}.ts`)) as { default: Benchmark };
const json = flags.get('json') === true;
flags.delete('json');
const reporter = createReporter('bench', name, json);
await mod.default.run({
  flags,
  report: (row) => reporter.report(row),
  log: (message) => process.stderr.write(`${message}\n`),
});
reporter.finish();
