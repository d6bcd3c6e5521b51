import type { Entry } from '../core/types.js';
import type { SimNode } from './sim-node.js';

function digest(e: Entry): string {
  return `${e.type}:${Buffer.from(e.data).toString('base64')}`;
}

/**
 * Raft's safety properties, checked as the simulation runs: election safety,
 * log matching (inductively, on every append), state-machine safety, leader
 * completeness and monotonic commit indexes.
 */
export class SafetyChecker {
  readonly violations: string[] = [];
  private readonly leaders = new Map<number, string>();
  private maxLeaderTerm = 0;
  /** (index, term) -> entry digest and the term of the entry before it. */
  private readonly logEntries = new Map<string, { digest: string; prevTerm: number }>();
  /** index -> committed entry, with the highest leader term seen when it was first applied. */
  private readonly committed = new Map<number, { term: number; digest: string; leaderTermSeen: number }>();
  private readonly lastCommit = new Map<string, number>();
  step = 0;

  private fail(rule: string, detail: string): void {
    if (this.violations.length < 20) this.violations.push(`step ${this.step}: ${rule}: ${detail}`);
  }

  onAppend(node: SimNode, entries: Entry[]): void {
    const raft = node.raft!;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      // 0 = unknown (compacted): such an entry is only checked by its own digest.
      const prevTerm = i === 0 ? raft.log.termOrZero(e.index - 1) : entries[i - 1]!.term;
      const key = `${e.index}/${e.term}`;
      const seen = this.logEntries.get(key);
      const d = digest(e);
      if (seen === undefined) {
        this.logEntries.set(key, { digest: d, prevTerm });
        continue;
      }
      if (seen.digest !== d)
        this.fail('log matching', `${node.id} has a different entry at index ${e.index} term ${e.term}`);
      const known = (e.index === 1 || prevTerm !== 0) && (e.index === 1 || seen.prevTerm !== 0);
      if (known && prevTerm !== seen.prevTerm) {
        this.fail(
          'log matching',
          `${node.id}: entries ${e.index}/${e.term} follow different terms (${prevTerm} vs ${seen.prevTerm})`,
        );
      }
    }
  }

  onApply(node: SimNode, e: Entry): void {
    const seen = this.committed.get(e.index);
    if (seen === undefined) {
      this.committed.set(e.index, { term: e.term, digest: digest(e), leaderTermSeen: this.maxLeaderTerm });
    } else if (seen.term !== e.term || seen.digest !== digest(e)) {
      this.fail('state-machine safety', `${node.id} applied a different entry at index ${e.index}`);
    }
  }

  /** Called after every step with the live nodes. */
  checkStep(nodes: SimNode[]): void {
    for (const n of nodes) {
      const raft = n.raft;
      if (raft === undefined) continue;
      const key = `${n.id}#${n.incarnation}`;
      const prev = this.lastCommit.get(key) ?? 0;
      if (raft.log.committed < prev)
        this.fail('commit index never decreases', `${n.id} went from ${prev} to ${raft.log.committed}`);
      this.lastCommit.set(key, raft.log.committed);
      if (raft.role !== 'leader') continue;
      const holder = this.leaders.get(raft.term);
      if (holder === undefined) {
        this.leaders.set(raft.term, n.id);
        this.checkLeaderCompleteness(n);
        this.maxLeaderTerm = Math.max(this.maxLeaderTerm, raft.term);
      } else if (holder !== n.id) {
        this.fail('election safety', `${holder} and ${n.id} both lead term ${raft.term}`);
      }
    }
  }

  /** §5.4: a new leader holds every entry committed in earlier terms. */
  private checkLeaderCompleteness(n: SimNode): void {
    const raft = n.raft!;
    const first = raft.log.firstIndex();
    for (const [index, c] of this.committed) {
      if (c.leaderTermSeen >= raft.term || index < first) continue;
      if (raft.log.term(index) !== c.term) {
        this.fail(
          'leader completeness',
          `${n.id} leads term ${raft.term} without committed entry ${index}/${c.term}`,
        );
      }
    }
  }
}
