// npm run bench -- NAME [--json] [benchmark flags]
import { chooseModule, createReporter, parseFlags } from '../lib/report.js';
import type { Benchmark } from './types.js';

const here = new URL('.', import.meta.url).pathname;
const { positional, flags } = parseFlags(process.argv.slice(2));
const name = chooseModule(here, positional[0], 'npm run bench -- NAME [--json]');

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
