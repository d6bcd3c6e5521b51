/**
 * The resolver as the daemon runs it: one DnsServer, upstreams from the host
 * resolv.conf, and sandbox sockets kept in step with the desired state. Each
 * `apply` updates the records first (the next query sees them), then attaches
 * sandboxes that appeared and detaches those that went away. A sandbox whose
 * sockets cannot be opened yet (its namespace is still being built) is tried
 * again on the next apply, or after a backoff (0.5 s doubling to 30 s) when no
 * apply comes: a stable state must not leave a task without DNS.
 */
import { readFileSync } from 'node:fs';
import type { Registry } from 'prom-client';
import type { DesiredState } from '../../src/api/gen/meshd/v1/dataplane.js';
import { type Clock, systemClock } from '../../src/common/clock.js';
import { errorMessage } from '../../src/common/errors.js';
import { type Logger, subsystemLogger } from '../../src/common/logger.js';
import { sandboxNetnsName } from '../overlay/names.js';
import { upstreamsFromResolvConf } from './resolvconf.js';
import { openSandboxDnsSockets } from './sandbox-sockets.js';
import { DnsServer, type DnsServerOptions, type SandboxSockets } from './server.js';

export interface EmbeddedDnsOptions {
  registry: Registry;
  /** Prefix of this host's namespaces (the sandbox namespace names derive from it). */
  hostPrefix: string;
  resolvConfPath?: string;
  /** Opens a sandbox's sockets; the real one hands them over from the namespace. */
  openSockets?: (netns: string) => Promise<SandboxSockets>;
  serverOptions?: Omit<DnsServerOptions, 'registry' | 'upstreams'>;
  logger?: Logger;
  clock?: Clock;
}

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 30_000;
const OPEN_CONCURRENCY = 3;

export interface ApplyReport {
  attached: string[];
  detached: string[];
  failed: { taskId: string; error: string }[];
}

export class EmbeddedDns {
  readonly server: DnsServer;
  private readonly attached = new Set<string>();
  private readonly hostPrefix: string;
  private readonly openSockets: (netns: string) => Promise<SandboxSockets>;
  private readonly log: Logger;
  /** Applies run one at a time, in call order. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly clock: Clock;
  private cancelRetry: (() => void) | undefined;
  private retryDelayMs = RETRY_FIRST_MS;
  private closed = false;

  constructor(options: EmbeddedDnsOptions) {
    this.log = options.logger ?? subsystemLogger('dns');
    const path = options.resolvConfPath ?? '/etc/resolv.conf';
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      this.log.warn(
        { path, err: errorMessage(err) },
        'cannot read resolv.conf; forwarded names get SERVFAIL',
      );
    }
    const { upstreams, skipped } = upstreamsFromResolvConf(text);
    if (skipped.length > 0) this.log.info({ path, skipped }, 'resolv.conf nameservers not used');
    this.server = new DnsServer({ ...options.serverOptions, registry: options.registry, upstreams });
    this.hostPrefix = options.hostPrefix;
    this.openSockets = options.openSockets ?? openSandboxDnsSockets;
    this.clock = options.clock ?? systemClock;
  }

  /**
   * `onSandboxDone(taskId)`: called per task of `state` as soon as its sandbox
   * is served (or its attempt failed), so the agent starts it without waiting
   * for the other sandboxes' sockets.
   */
  apply(state: DesiredState, onSandboxDone?: (taskId: string) => void): Promise<ApplyReport> {
    this.cancelRetry?.();
    this.cancelRetry = undefined;
    this.retryDelayMs = RETRY_FIRST_MS;
    return this.enqueue(state, onSandboxDone);
  }

  private enqueue(state: DesiredState, onSandboxDone?: (taskId: string) => void): Promise<ApplyReport> {
    const run = this.queue.then(() => this.applyNow(state, onSandboxDone));
    this.queue = run.catch(() => {});
    run.then(
      (report) => {
        if (report.failed.length === 0 || this.closed || this.cancelRetry !== undefined) return;
        const delayMs = this.retryDelayMs;
        this.retryDelayMs = Math.min(RETRY_MAX_MS, this.retryDelayMs * 2);
        this.cancelRetry = this.clock.setTimer(delayMs, () => {
          this.cancelRetry = undefined;
          void this.enqueue(state).catch(() => {});
        });
      },
      () => {},
    );
    return run;
  }

  private async applyNow(
    state: DesiredState,
    onSandboxDone?: (taskId: string) => void,
  ): Promise<ApplyReport> {
    this.server.update(state);
    const report: ApplyReport = { attached: [], detached: [], failed: [] };
    const wanted = new Set(state.sandboxes.map((s) => s.taskId));
    for (const taskId of [...this.attached]) {
      if (wanted.has(taskId)) continue;
      this.server.detach(taskId);
      this.attached.delete(taskId);
      report.detached.push(taskId);
    }
    const missing = [...wanted].filter((taskId) => !this.attached.has(taskId));
    for (const taskId of wanted) if (this.attached.has(taskId)) onSandboxDone?.(taskId);
    // Each opening starts a helper process (most of a second of CPU): a few at a
    // time, so a burst of new tasks neither waits in one line nor floods the box.
    const attachOne = async (taskId: string): Promise<void> => {
      try {
        this.server.attach(taskId, await this.openSockets(sandboxNetnsName(this.hostPrefix, taskId)));
        this.attached.add(taskId);
        report.attached.push(taskId);
      } catch (err) {
        report.failed.push({ taskId, error: errorMessage(err) });
        this.log.warn(
          { taskId, err: errorMessage(err) },
          'cannot open DNS sockets in the sandbox; will retry',
        );
      }
      onSandboxDone?.(taskId);
    };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < missing.length) await attachOne(missing[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, missing.length) }, worker));
    report.attached.sort();
    return report;
  }

  /** Tasks whose sandbox has 127.0.0.11 served now (for `meshctl diag`). */
  attachedTaskIds(): string[] {
    return [...this.attached].sort();
  }

  close(): void {
    this.closed = true;
    this.cancelRetry?.();
    this.server.close();
    this.attached.clear();
  }
}
