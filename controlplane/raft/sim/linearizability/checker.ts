/**
 * Linearizability checker for key-value register histories: the Wing–Gong
 * search with Lowe's memoisation (the algorithm Porcupine uses). The history
 * is partitioned per key (a register per key is independent), and an
 * operation whose outcome is unknown gets an infinite return time: it may
 * take effect at any point after its call, or never.
 */

export type KvInput = { kind: 'put'; key: string; value: string } | { kind: 'get'; key: string };

export interface KvOperation {
  clientId: number;
  input: KvInput;
  /** For a get: the value read (null = absent). Ignored for puts. */
  output: string | null;
  callTime: number;
  /** Infinity when the outcome is unknown (timeout, crash). */
  returnTime: number;
}

export interface CheckResult {
  ok: boolean;
  /** The first key whose history is not linearizable. */
  failingKey?: string;
  /** True when the search budget ran out (treated as ok: we could not refute it). */
  exhausted: boolean;
}

interface ListNode {
  op: number;
  isCall: boolean;
  time: number;
  match: ListNode | undefined;
  prev: ListNode | undefined;
  next: ListNode | undefined;
}

/** A register: a put always succeeds; a get must read the current value. */
function stepRegister(state: string | null, op: KvOperation): { ok: boolean; state: string | null } {
  if (op.input.kind === 'put') return { ok: true, state: op.input.value };
  return { ok: op.output === state, state };
}

export function checkKvHistory(history: KvOperation[], maxStepsPerKey = 2_000_000): CheckResult {
  const byKey = new Map<string, KvOperation[]>();
  for (const op of history) {
    // A get whose outcome is unknown constrains nothing: leave it out.
    if (op.input.kind === 'get' && op.returnTime === Number.POSITIVE_INFINITY) continue;
    const list = byKey.get(op.input.key) ?? [];
    list.push(op);
    byKey.set(op.input.key, list);
  }
  let exhausted = false;
  for (const key of [...byKey.keys()].sort()) {
    const result = checkSingleKey(byKey.get(key)!, maxStepsPerKey);
    if (result === 'exhausted') exhausted = true;
    else if (!result) return { ok: false, failingKey: key, exhausted };
  }
  return { ok: true, exhausted };
}

function buildList(ops: KvOperation[]): ListNode | undefined {
  const events: ListNode[] = [];
  ops.forEach((op, i) => {
    const call: ListNode = {
      op: i,
      isCall: true,
      time: op.callTime,
      match: undefined,
      prev: undefined,
      next: undefined,
    };
    const ret: ListNode = {
      op: i,
      isCall: false,
      time: op.returnTime,
      match: undefined,
      prev: undefined,
      next: undefined,
    };
    call.match = ret;
    events.push(call, ret);
  });
  // Calls before returns at equal times: operations that touch are concurrent.
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.op - b.op : a.isCall ? -1 : 1));
  const head: ListNode = {
    op: -1,
    isCall: false,
    time: -1,
    match: undefined,
    prev: undefined,
    next: undefined,
  };
  let tail = head;
  for (const e of events) {
    tail.next = e;
    e.prev = tail;
    tail = e;
  }
  return head;
}

function lift(call: ListNode): void {
  call.prev!.next = call.next;
  if (call.next) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

function unlift(call: ListNode): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next) call.next.prev = call;
}

function checkSingleKey(ops: KvOperation[], maxSteps: number): boolean | 'exhausted' {
  const head = buildList(ops)!;
  const linearized = new Uint8Array(ops.length);
  const cache = new Set<string>();
  const stack: { call: ListNode; state: string | null }[] = [];
  let state: string | null = null;
  let entry = head.next;
  for (let steps = 0; entry !== undefined; steps++) {
    if (steps > maxSteps) return 'exhausted';
    if (entry.isCall) {
      const op = ops[entry.op]!;
      const next = stepRegister(state, op);
      if (next.ok) {
        linearized[entry.op] = 1;
        const key = `${Buffer.from(linearized).toString('base64')}|${next.state ?? '\u0000'}`;
        if (!cache.has(key)) {
          // Lowe's memoisation: the same set of linearized operations reaching the
          // same register state was already explored and failed.
          cache.add(key);
          stack.push({ call: entry, state });
          state = next.state;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[entry.op] = 0;
      }
      entry = entry.next;
    } else {
      // A return whose call is not linearized yet: backtrack.
      const top = stack.pop();
      if (top === undefined) return false;
      state = top.state;
      linearized[top.call.op] = 0;
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return true;
}
