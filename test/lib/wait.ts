/**
 * Polls `cond` until it holds; fails naming `what` after `timeoutMs`. Every
 * wait in the tests is bounded by this.
 */
export async function waitFor(
  what: string,
  cond: () => boolean,
  timeoutMs = 5000,
  intervalMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
