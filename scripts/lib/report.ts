import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Output shared by the benchmark and simulation runners: a table for people,
 * or one JSON object per line (`--json`) with `bench`, `metric`, `value`,
 * `unit` plus any context fields, for machines.
 */
export interface ResultRow {
  metric: string;
  value: number | string;
  unit: string;
  [context: string]: unknown;
}

export interface Reporter {
  report(row: ResultRow): void;
  /** Prints what was collected (table mode); JSON mode prints as it goes. */
  finish(): void;
}

export function createReporter(kind: 'bench' | 'sim', name: string, json: boolean): Reporter {
  const rows: ResultRow[] = [];
  return {
    report(row) {
      if (json) process.stdout.write(`${JSON.stringify({ [kind]: name, ...row })}\n`);
      else rows.push(row);
    },
    finish() {
      if (json || rows.length === 0) return;
      printTable(name, rows);
    },
  };
}

function printTable(name: string, rows: ResultRow[]): void {
  const contextKeys = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter(
    (k) => k !== 'metric' && k !== 'value' && k !== 'unit',
  );
  const header = ['metric', 'value', 'unit', ...contextKeys];
  const cells = rows.map((r) => header.map((k) => formatCell(r[k])));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]?.length ?? 0)));
  const line = (cols: string[]) => cols.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  console.log(`\n${name}`);
  console.log(line(header));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const c of cells) console.log(line(c));
}

function formatCell(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  return String(value);
}

/** Parses `--flag value` and `--flag` style options after the positional name. */
export function parseFlags(argv: string[]): { positional: string[]; flags: Map<string, string | true> } {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const [key, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
    if (inline !== undefined) flags.set(key, inline);
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) flags.set(key, argv[++i]!);
    else flags.set(key, true);
  }
  return { positional, flags };
}

/**
 * The runner's module NAME from argv, or exit 2 with usage listing the modules
 * (every `*.ts` in `dir` but main.ts and types.ts).
 */
export function chooseModule(dir: string, name: string | undefined, usage: string): string {
  if (name !== undefined && existsSync(join(dir, `${name}.ts`))) return name;
  const available = readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !['main.ts', 'types.ts'].includes(f))
    .map((f) => f.slice(0, -3));
  console.error(
    `usage: ${usage}; NAME is one of: ${available.length > 0 ? available.join(', ') : '(none yet)'}`,
  );
  process.exit(2);
}
