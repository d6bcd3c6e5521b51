import { NetnsHelper } from './helper.js';

/** One long-lived helper per namespace, started on first use (see README.md for the cost). */
export class NetnsHelperPool {
  private readonly helpers = new Map<string, Promise<NetnsHelper>>();

  get(netns: string): Promise<NetnsHelper> {
    let h = this.helpers.get(netns);
    if (h === undefined) {
      h = NetnsHelper.start(netns);
      // A failed start must not be cached: the next call retries.
      h.catch(() => this.helpers.delete(netns));
      this.helpers.set(netns, h);
    }
    return h;
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
