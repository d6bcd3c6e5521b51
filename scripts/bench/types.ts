import type { ResultRow } from '../lib/report.js';

/** A benchmark module under scripts/bench/NAME.ts default-exports one of these. */
export interface Benchmark {
  description: string;
  run(ctx: BenchContext): Promise<void>;
}

export interface BenchContext {
  /** Flags after the benchmark name (e.g. `--vm`), already parsed. */
  flags: Map<string, string | true>;
  report(row: ResultRow): void;
  /** Progress for people; goes to stderr so `--json` output stays clean. */
  log(message: string): void;
}
