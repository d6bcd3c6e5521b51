import { Counter, Registry } from 'prom-client';
import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import type { Clock } from '../../src/common/clock.js';
import { errorMessage } from '../../src/common/errors.js';
import { subsystemLogger } from '../../src/common/logger.js';
import { assertValidDesiredState } from '../desired/validate.js';

/**
 * One kind of kernel state the data plane owns (LB rules, FDB/neighbour
 * entries, links...). `desired` and `plan` are pure; `dump` reads the kernel,
 * `apply` writes only the planned changes.
 */
export interface Programmer<Model, Change> {
  readonly name: string;
  desired(state: DesiredState): Model;
  dump(): Promise<Model>;
  plan(desired: Model, actual: Model): Change[];
  apply(changes: readonly Change[]): Promise<{ kernelOperations: number }>;
  /** For `dump --json`: a plain-JSON view of a model and of a change. */
  describe?(model: Model): unknown;
  describeChange?(change: Change): unknown;
}

// biome-ignore lint/suspicious/noExplicitAny: a heterogeneous list of programmers; each is used consistently with itself.
export type AnyProgrammer = Programmer<any, any>;

export interface ProgrammerResult {
  name: string;
  changes: number;
  kernelOperations: number;
}

export interface ReconcileResult {
  kind: 'apply' | 'resync';
  version: number;
  programmers: ProgrammerResult[];
  /** Total planned changes; on a resync these are drift repairs. */
  changes: number;
  kernelOperations: number;
  durationMs: number;
}

export interface ProgrammerView {
  name: string;
  desired: unknown;
  programmed: unknown;
  /** Changes a sync would make now: drift (or a state not yet applied). */
  pending: unknown[];
}

export interface ReconcilerStatus {
  version: number | null;
  applies: number;
  resyncs: number;
  driftRepairsTotal: number;
  lastError: string | null;
}

const log = subsystemLogger('reconciler');

/**
 * desired -> validate -> per programmer: desired model, dump, plan (pure), apply
 * the minimum. The whole state is validated and every model computed before
 * the first kernel write, so a bad state changes nothing. Re-applying the same
 * state plans zero changes; a resync re-reads the kernel and counts what it
 * had to repair as drift.
 */
export class Reconciler {
  readonly registry = new Registry();
  private readonly driftCounter: Counter<'programmer'>;
  private current: DesiredState | null = null;
  /** Per programmer: the model it last programmed successfully (what an apply plans against). */
  private readonly programmed = new Map<AnyProgrammer, unknown>();
  private running: Promise<unknown> = Promise.resolve();
  private readonly stats: ReconcilerStatus = {
    version: null,
    applies: 0,
    resyncs: 0,
    driftRepairsTotal: 0,
    lastError: null,
  };

  constructor(private readonly programmers: readonly AnyProgrammer[]) {
    this.driftCounter = new Counter({
      name: 'meshd_dataplane_drift_repairs_total',
      help: 'Kernel changes a periodic resync had to make because the kernel drifted from the desired state',
      labelNames: ['programmer'],
      registers: [this.registry],
    });
  }

  /**
   * Validates `state` (throws ValidationError naming the field, nothing
   * applied) and applies it. `onProgrammed(name)` is called as each
   * programmer is done, so a caller can act on an early one (the agent starts
   * tasks once the sandboxes exist, while the LB is still being programmed).
   */
  async apply(
    state: DesiredState,
    options: { onProgrammed?: (programmer: string) => void } = {},
  ): Promise<ReconcileResult> {
    assertValidDesiredState(state);
    return this.serialize(() => this.sync(state, 'apply', options.onProgrammed));
  }

  /** Re-reads the kernel and repairs drift from the last applied state; null before the first apply. */
  resync(): Promise<ReconcileResult | null> {
    return this.serialize(async () => (this.current === null ? null : this.sync(this.current, 'resync')));
  }

  /**
   * Desired vs programmed, with what a sync would change now. Runs between
   * applies, never during one: a dump refreshes what a backend knows of the
   * kernel, which an apply in flight relies on.
   */
  view(state?: DesiredState | null): Promise<ProgrammerView[]> {
    return this.serialize(() => this.viewNow(state === undefined ? this.current : state));
  }

  private async viewNow(state: DesiredState | null): Promise<ProgrammerView[]> {
    if (state === null) return [];
    const views: ProgrammerView[] = [];
    for (const p of this.programmers) {
      const desired = p.desired(state);
      const actual = await p.dump();
      const pending = p.plan(desired, actual);
      views.push({
        name: p.name,
        desired: p.describe ? p.describe(desired) : desired,
        programmed: p.describe ? p.describe(actual) : actual,
        pending: pending.map((c) => (p.describeChange ? p.describeChange(c) : c)),
      });
    }
    return views;
  }

  status(): ReconcilerStatus {
    return { ...this.stats };
  }

  /** Runs `resync` every `intervalMs` on `clock` until the returned function is called. */
  startPeriodicResync(clock: Clock, intervalMs: number): () => void {
    let cancel: (() => void) | null = null;
    let stopped = false;
    const tick = () => {
      this.resync()
        .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'resync failed'))
        .finally(() => {
          if (!stopped) cancel = clock.setTimer(intervalMs, tick);
        });
    };
    cancel = clock.setTimer(intervalMs, tick);
    return () => {
      stopped = true;
      cancel?.();
    };
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.running.then(fn, fn);
    this.running = next.catch(() => undefined);
    return next;
  }

  private async sync(
    state: DesiredState,
    kind: 'apply' | 'resync',
    onProgrammed?: (programmer: string) => void,
  ): Promise<ReconcileResult> {
    const startedMs = performance.now();
    const desiredModels = this.programmers.map((p) => p.desired(state));
    const results: ProgrammerResult[] = [];
    try {
      for (const [i, p] of this.programmers.entries()) {
        // An apply plans against what this process last programmed (O(what changed)); a
        // resync, or an apply with nothing remembered, re-reads the kernel (O(everything)).
        const fromMemory = kind === 'apply' && this.programmed.has(p);
        let changes = p.plan(desiredModels[i], fromMemory ? this.programmed.get(p) : await p.dump());
        let applied = { kernelOperations: 0 };
        if (changes.length > 0) {
          this.programmed.delete(p);
          try {
            applied = await p.apply(changes);
          } catch (err) {
            if (!fromMemory) throw err;
            // The kernel drifted under a plan made from memory: re-read it and try once more.
            log.warn(
              { programmer: p.name, err: errorMessage(err) },
              'apply from memory failed; re-reading the kernel',
            );
            changes = p.plan(desiredModels[i], await p.dump());
            applied = changes.length === 0 ? applied : await p.apply(changes);
          }
        }
        this.programmed.set(p, desiredModels[i]);
        results.push({ name: p.name, changes: changes.length, kernelOperations: applied.kernelOperations });
        onProgrammed?.(p.name);
        if (kind === 'resync' && changes.length > 0) {
          this.driftCounter.inc({ programmer: p.name }, changes.length);
          this.stats.driftRepairsTotal += changes.length;
          log.warn({ programmer: p.name, changes: changes.length }, 'resync repaired drift');
        }
      }
      this.stats.lastError = null;
    } catch (err) {
      this.stats.lastError = errorMessage(err);
      this.programmed.clear();
      throw err;
    }
    this.current = state;
    this.stats.version = state.version;
    if (kind === 'apply') this.stats.applies++;
    else this.stats.resyncs++;
    return {
      kind,
      version: state.version,
      programmers: results,
      changes: results.reduce((n, r) => n + r.changes, 0),
      kernelOperations: results.reduce((n, r) => n + r.kernelOperations, 0),
      durationMs: performance.now() - startedMs,
    };
  }
}
