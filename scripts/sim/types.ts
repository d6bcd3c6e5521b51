/** A simulation module under scripts/sim/NAME.ts default-exports one of these. */
export interface Simulation {
  description: string;
  /**
   * Runs one seed to the end. Must be deterministic: the same seed gives the
   * same steps and the same violations, so a failing seed replays exactly.
   */
  runSeed(seed: number, flags: Map<string, string | true>): SeedResult;
}

export interface SeedResult {
  steps: number;
  /** Invariant violations, each a sentence naming the rule and the step. */
  violations: string[];
}
