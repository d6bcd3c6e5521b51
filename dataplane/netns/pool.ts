import { NetnsHelper } from './helper.js';

/**
 * One long-lived helper per namespace, started on first use (see README.md for
 * the cost). A helper that died (killed, crashed) is replaced on the next use.
 */
export class NetnsHelperPool {
  private readonly helpers = new Map<string, Promise<NetnsHelper>>();

  /** `command`: how helpers start (see NetnsHelper.start); default node + tsx. */
  constructor(private readonly command?: string[]) {}

  async get(netns: string): Promise<NetnsHelper> {
    const cached = this.helpers.get(netns);
    if (cached !== undefined) {
      const helper = await cached.catch(() => null);
      if (helper?.alive === true) return helper;
      // Another caller may have replaced it meanwhile; only drop the one we saw.
      if (this.helpers.get(netns) === cached) this.helpers.delete(netns);
      else return this.get(netns);
    }
    const started = NetnsHelper.start(netns, this.command);
    // A failed start must not be cached: the next call retries.
    started.catch(() => {
      if (this.helpers.get(netns) === started) this.helpers.delete(netns);
    });
    this.helpers.set(netns, started);
    return started;
  }

  async stop(netns: string): Promise<void> {
    const h = this.helpers.get(netns);
    this.helpers.delete(netns);
    if (h !== undefined) await (await h.catch(() => null))?.stop();
  }

  async stopAll(): Promise<void> {
    for (const netns of [...this.helpers.keys()]) await this.stop(netns);
  }
}
