import { SeededRng } from '../../../src/common/rng.js';
import { MemoryStorage } from '../core/memory-storage.js';
import { Raft } from '../core/raft.js';
import {
  type ConfState,
  DEFAULT_RAFT_CONFIG,
  type Entry,
  type NodeId,
  type RaftConfig,
  type RaftMessage,
  type ReadState,
  type Ready,
} from '../core/types.js';

/** One member of a TestCluster: the core, its storage and what it applied. */
export interface TestNode {
  id: NodeId;
  raft: Raft;
  storage: MemoryStorage;
  applied: Entry[];
  readStates: ReadState[];
  /** Every Ready this node produced, for tests that check persistence order. */
  readies: Ready[];
}

export interface TestClusterOptions {
  seed?: number;
  config?: Partial<Omit<RaftConfig, 'id'>>;
  learners?: NodeId[];
}

/**
 * A whole cluster in one process for conformance and scripted tests: perfect
 * storage, a message queue the test controls, partitions by node pairs.
 * Every Ready is persisted before its messages are queued, as the driver must.
 */
export class TestCluster {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Messages sent but not yet delivered, in send order. */
  inFlight: RaftMessage[] = [];
  /** Directed links that drop everything: "a->b". */
  readonly cut = new Set<string>();
  private readonly rng: SeededRng;
  private readonly options: TestClusterOptions;

  constructor(voters: NodeId[], options: TestClusterOptions = {}) {
    this.options = options;
    this.rng = new SeededRng(options.seed ?? 1);
    const confState: ConfState = { voters, learners: options.learners ?? [] };
    for (const id of [...voters, ...confState.learners]) this.addNode(id, confState);
  }

  configFor(id: NodeId): RaftConfig {
    return { ...DEFAULT_RAFT_CONFIG, ...this.options.config, id };
  }

  /** Adds (or replaces) a node with a fresh storage holding `confState`. */
  addNode(id: NodeId, confState: ConfState, storage = new MemoryStorage(confState)): TestNode {
    const raft = new Raft(this.configFor(id), storage, this.rng.fork());
    const node: TestNode = { id, raft, storage, applied: [], readStates: [], readies: [] };
    this.nodes.set(id, node);
    return node;
  }

  /** Restarts a node from its storage (volatile state lost, durable state kept). */
  restart(id: NodeId): TestNode {
    const old = this.node(id);
    const raft = new Raft({ ...this.configFor(id), applied: 0 }, old.storage, this.rng.fork());
    const node: TestNode = { id, raft, storage: old.storage, applied: [], readStates: [], readies: [] };
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`test cluster: no node ${id}`);
    return n;
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft;
  }

  ids(): NodeId[] {
    return [...this.nodes.keys()].sort();
  }

  /** Handles every pending Ready of one node; returns the messages it produced. */
  process(id: NodeId): RaftMessage[] {
    const n = this.node(id);
    const out: RaftMessage[] = [];
    for (let guard = 0; guard < 100 && n.raft.hasReady(); guard++) {
      const rd = n.raft.ready();
      n.readies.push(rd);
      if (rd.snapshot !== undefined) n.storage.applySnapshot(rd.snapshot);
      n.storage.append(rd.entries);
      if (rd.hardState !== undefined) n.storage.setHardState(rd.hardState);
      out.push(...rd.messages);
      n.applied.push(...rd.committedEntries);
      n.readStates.push(...rd.readStates);
      n.raft.advance();
    }
    this.inFlight.push(...out);
    return out;
  }

  processAll(): RaftMessage[] {
    const out: RaftMessage[] = [];
    for (const id of this.ids()) out.push(...this.process(id));
    return out;
  }

  private deliverable(m: RaftMessage): boolean {
    return this.nodes.has(m.to) && !this.cut.has(`${m.from}->${m.to}`);
  }

  /** Delivers the queued messages matching `filter` (others stay queued); returns them. */
  deliver(filter: (m: RaftMessage) => boolean = () => true): RaftMessage[] {
    const now = this.inFlight;
    this.inFlight = [];
    const delivered: RaftMessage[] = [];
    for (const m of now) {
      if (!filter(m)) {
        this.inFlight.push(m);
        continue;
      }
      delivered.push(m);
      if (this.deliverable(m)) this.node(m.to).raft.step(m);
    }
    return delivered;
  }

  /** Drops the queued messages matching `filter`. */
  drop(filter: (m: RaftMessage) => boolean): RaftMessage[] {
    const dropped: RaftMessage[] = [];
    const kept: RaftMessage[] = [];
    for (const m of this.inFlight) (filter(m) ? dropped : kept).push(m);
    this.inFlight = kept;
    return dropped;
  }

  /** Processes and delivers until no node has anything to do (bounded). */
  stabilize(maxRounds = 200): void {
    for (let round = 0; round < maxRounds; round++) {
      this.processAll();
      if (this.inFlight.length === 0) return;
      this.deliver();
    }
    throw new Error(`test cluster: not stable after ${maxRounds} rounds`);
  }

  tick(id: NodeId, count = 1): void {
    for (let i = 0; i < count; i++) this.raft(id).tick();
  }

  /** Ticks every node `count` times, stabilizing after each tick. */
  tickAll(count: number): void {
    for (let i = 0; i < count; i++) {
      for (const id of this.ids()) this.raft(id).tick();
      this.stabilize();
    }
  }

  /** Cuts every link between the groups (each node reaches only its own group). */
  partition(...groups: NodeId[][]): void {
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) continue;
        for (const x of a) for (const y of b) this.cut.add(`${x}->${y}`);
      }
    }
  }

  isolate(id: NodeId): void {
    this.partition(
      [id],
      this.ids().filter((x) => x !== id),
    );
  }

  heal(): void {
    this.cut.clear();
  }

  elect(id: NodeId): void {
    this.raft(id).campaign();
    this.stabilize();
  }

  leader(): NodeId | undefined {
    return this.ids().find((id) => this.raft(id).role === 'leader');
  }

  /** Data of the normal, non-empty entries a node applied, as strings. */
  appliedData(id: NodeId): string[] {
    return this.node(id)
      .applied.filter((e) => e.type === 'normal' && e.data.byteLength > 0)
      .map((e) => new TextDecoder().decode(e.data));
  }
}

export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}
