/**
 * Certificate renewal on the node. The decision is pure (`renewalDelayMs`,
 * `retryDelayMs`); `CertificateRenewer` is the shell that owns a timer from an
 * injected Clock and randomness from an injected Rng, so tests drive it with a
 * ManualClock and a seed.
 */
import type { Clock } from '../../src/common/clock.js';
import { errorMessage } from '../../src/common/errors.js';
import { subsystemLogger } from '../../src/common/logger.js';
import type { Rng } from '../../src/common/rng.js';
import type { TlsMaterial } from '../../src/common/transport/credentials.js';
import { BACKDATE_MS } from './authority.js';
import { parseCertificate } from './x509.js';

const log = subsystemLogger('ca-renewal');

export const RENEW_WINDOW_START = 0.5;
export const RENEW_WINDOW_END = 0.8;
export const RETRY_BASE_MS = 1_000;
export const RETRY_MAX_MS = 60_000;
/** The longest delay a Node.js timer keeps (2^31-1 ms). */
export const MAX_TIMER_DELAY_MS = 2_147_483_647;

export interface Validity {
  notBeforeMs: number;
  notAfterMs: number;
}

export function certificateValidity(certChainPem: string): Validity {
  const cert = parseCertificate(certChainPem, 'certificate');
  return { notBeforeMs: cert.notBefore.getTime(), notAfterMs: cert.notAfter.getTime() };
}

/**
 * Delay from `nowMs` to a uniformly random point between 50% and 80% of the
 * certificate's lifetime, so nodes issued together do not all renew together.
 * The lifetime counts from issue (notBefore plus the clock-skew backdating),
 * not from the backdated notBefore, or a short certificate would renew at once.
 */
export function renewalDelayMs(validity: Validity, nowMs: number, rng: Rng): number {
  const issuedMs = Math.min(validity.notBeforeMs + BACKDATE_MS, validity.notAfterMs);
  const lifetimeMs = validity.notAfterMs - issuedMs;
  const fraction = RENEW_WINDOW_START + rng.next() * (RENEW_WINDOW_END - RENEW_WINDOW_START);
  const atMs = issuedMs + Math.floor(lifetimeMs * fraction);
  return Math.max(0, atMs - nowMs);
}

/** Exponential backoff with jitter (50-100% of the step), capped. */
export function retryDelayMs(attempt: number, rng: Rng): number {
  const stepMs = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(attempt, 30));
  return Math.floor(stepMs * (0.5 + 0.5 * rng.next()));
}

export interface RenewerOptions {
  clock: Clock;
  rng: Rng;
  /** Gets a new certificate (e.g. renewNodeCertificate against a manager). */
  renew: (current: TlsMaterial) => Promise<TlsMaterial>;
  /** Installs the new material: save to disk, reload server credentials, new channels. */
  onRenewed: (material: TlsMaterial) => void | Promise<void>;
}

export class CertificateRenewer {
  private current: TlsMaterial;
  private cancelTimer: (() => void) | undefined;
  private attempt = 0;
  private stopped = false;
  private inFlight: Promise<void> | undefined;
  /** Clock times at which renewal attempts started (for tests and metrics). */
  readonly attemptTimesMs: number[] = [];

  constructor(
    material: TlsMaterial,
    private readonly opts: RenewerOptions,
  ) {
    this.current = material;
  }

  material(): TlsMaterial {
    return this.current;
  }

  /** The same certificate with other trust (a bundle update); the schedule stays. */
  replaceMaterial(material: TlsMaterial): void {
    this.current = material;
  }

  start(): void {
    this.stopped = false;
    this.schedule(
      renewalDelayMs(certificateValidity(this.current.certChainPem), this.opts.clock.nowMs(), this.opts.rng),
    );
  }

  stop(): void {
    this.stopped = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }

  /** Renew now (role change, root rotation), replacing any scheduled renewal. */
  renewNow(): Promise<void> {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    return this.runAttempt();
  }

  /** Resolves when the attempt in progress (if any) has finished. */
  settled(): Promise<void> {
    return this.inFlight ?? Promise.resolve();
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.cancelTimer?.();
    // setTimeout fires at once for delays past 2^31-1 ms (24.8 days), and a
    // 90-day certificate renews 45+ days out: wait in steps.
    const stepMs = Math.min(delayMs, MAX_TIMER_DELAY_MS);
    this.cancelTimer = this.opts.clock.setTimer(stepMs, () => {
      this.cancelTimer = undefined;
      if (delayMs > stepMs) this.schedule(delayMs - stepMs);
      else void this.runAttempt();
    });
  }

  private runAttempt(): Promise<void> {
    if (this.inFlight !== undefined) return this.inFlight;
    this.attemptTimesMs.push(this.opts.clock.nowMs());
    this.inFlight = this.attemptOnce().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async attemptOnce(): Promise<void> {
    try {
      const next = await this.opts.renew(this.current);
      await this.opts.onRenewed(next);
      this.current = next;
      this.attempt = 0;
      this.schedule(
        renewalDelayMs(certificateValidity(next.certChainPem), this.opts.clock.nowMs(), this.opts.rng),
      );
    } catch (err) {
      const delayMs = retryDelayMs(this.attempt++, this.opts.rng);
      log.warn(
        { err: errorMessage(err), attempt: this.attempt, retryInMs: delayMs },
        'certificate renewal failed',
      );
      this.schedule(delayMs);
    }
  }
}
