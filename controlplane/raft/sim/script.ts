import { decodeConfChange } from '../core/conf-change.js';
import type { ConfChangeType, Entry, RaftMessage } from '../core/types.js';
import { TestCluster } from './cluster.js';

/**
 * A small scripting language for Raft scenarios with golden transcripts (in
 * the spirit of etcd's datadriven tests). Each command prints what happened:
 * role changes, applied entries, read states and every message delivered.
 *
 *   add-nodes N [learners=a,b] [prevote=false] [checkquorum=false] [chunk=BYTES]
 *   campaign ID | propose ID TEXT | propose-conf-change ID add-voter|add-learner|remove NODE
 *   add-node ID                      a joiner knowing the current voters
 *   tick ID [N] | tick-all [N]       ticks (tick-all stabilizes after each tick)
 *   stabilize                        process and deliver until quiet
 *   partition A B | C ... ; isolate ID ; heal
 *   transfer ID TARGET | read-index ID CTX | compact ID | report-snapshot ID PEER ok|fail
 *   status ID | raft-log ID
 */
export class ScriptRunner {
  private cluster: TestCluster | undefined;

  run(command: string): string {
    const [verb, ...args] = command.trim().split(/\s+/);
    const out: string[] = [];
    switch (verb) {
      case 'add-nodes':
        this.addNodes(args);
        break;
      case 'campaign':
        this.c.raft(args[0]!).campaign();
        break;
      case 'propose':
        this.guard(out, () =>
          this.c.raft(args[0]!).propose(new TextEncoder().encode(args.slice(1).join(' '))),
        );
        break;
      case 'propose-conf-change': {
        const types: Record<string, ConfChangeType> = {
          'add-voter': 'addVoter',
          'add-learner': 'addLearner',
          remove: 'removeNode',
        };
        const type = types[args[1]!];
        if (type === undefined) throw new Error(`script: unknown conf change ${args[1]}`);
        this.guard(out, () => this.c.raft(args[0]!).proposeConfChange({ type, nodeId: args[2]! }));
        break;
      }
      case 'add-node':
        this.c.addNode(args[0]!, {
          voters: [...this.c.raft(this.c.ids()[0]!).tracker.voters].sort(),
          learners: [],
        });
        break;
      case 'tick':
        this.c.tick(args[0]!, Number(args[1] ?? 1));
        break;
      case 'tick-all':
        for (let i = 0; i < Number(args[0] ?? 1); i++) {
          for (const id of this.c.ids()) this.c.tick(id);
          this.stabilize(out);
        }
        break;
      case 'stabilize':
        this.stabilize(out);
        break;
      case 'partition':
        this.c.heal();
        this.c.partition(
          ...args
            .join(' ')
            .split('|')
            .map((g) => g.trim().split(/\s+/)),
        );
        break;
      case 'isolate':
        this.c.isolate(args[0]!);
        break;
      case 'heal':
        this.c.heal();
        break;
      case 'transfer':
        this.c.raft(args[0]!).transferLeader(args[1]!);
        break;
      case 'read-index':
        this.guard(out, () => this.c.raft(args[0]!).readIndex(new TextEncoder().encode(args[1] ?? '')));
        break;
      case 'compact':
        this.compact(args[0]!, out);
        break;
      case 'report-snapshot':
        this.c.raft(args[0]!).reportSnapshot(args[1]!, args[2] === 'ok');
        break;
      case 'status':
        out.push(this.status(args[0]!));
        break;
      case 'raft-log':
        out.push(...this.raftLog(args[0]!));
        break;
      default:
        throw new Error(`script: unknown command ${JSON.stringify(verb)}`);
    }
    return out.length === 0 ? 'ok' : out.join('\n');
  }

  private get c(): TestCluster {
    if (this.cluster === undefined) throw new Error('script: add-nodes first');
    return this.cluster;
  }

  private guard(out: string[], fn: () => void): void {
    try {
      fn();
    } catch (err) {
      const e = err as { code?: string; message?: string };
      out.push(`error ${e.code ?? 'UNKNOWN'}: ${e.message ?? String(err)}`);
    }
  }

  private addNodes(args: string[]): void {
    const n = Number(args[0]);
    const opts = new Map(args.slice(1).map((a) => a.split('=') as [string, string]));
    const voters = Array.from({ length: n }, (_, i) => String(i + 1));
    const learners = opts.get('learners')?.split(',') ?? [];
    this.cluster = new TestCluster(voters, {
      learners,
      config: {
        preVote: opts.get('prevote') !== 'false',
        checkQuorum: opts.get('checkquorum') !== 'false',
        snapshotChunkBytes: Number(opts.get('chunk') ?? 1024),
      },
    });
  }

  private stabilize(out: string[]): void {
    const c = this.c;
    for (let round = 0; round < 200; round++) {
      for (const id of c.ids()) {
        const node = c.node(id);
        const before = node.readies.length;
        c.process(id);
        for (const rd of node.readies.slice(before)) {
          if (rd.softState)
            out.push(
              `> ${id} is ${rd.softState.role} term=${node.raft.term} lead=${rd.softState.lead ?? '-'}`,
            );
          if (rd.snapshot)
            out.push(`> ${id} restored snapshot ${rd.snapshot.metadata.index}/${rd.snapshot.metadata.term}`);
          for (const e of rd.committedEntries) out.push(`> ${id} applied ${formatEntry(e)}`);
          for (const rs of rd.readStates)
            out.push(`> ${id} read-state index=${rs.index} ctx=${text(rs.context)}`);
        }
      }
      if (c.inFlight.length === 0) return;
      for (const m of c.inFlight) {
        const cut = c.cut.has(`${m.from}->${m.to}`) || !c.nodes.has(m.to);
        out.push(`${cut ? 'DROP ' : ''}${formatMessage(m)}`);
      }
      c.deliver();
    }
    throw new Error('script: not stable after 200 rounds');
  }

  private compact(id: string, out: string[]): void {
    const node = this.c.node(id);
    const applied = node.raft.log.applied;
    node.storage.createSnapshot(
      applied,
      node.raft.tracker.confState(),
      new TextEncoder().encode(this.c.appliedData(id).join(',')),
    );
    node.storage.compact(applied);
    out.push(`${id} compacted through ${applied}`);
  }

  private status(id: string): string {
    const s = this.c.raft(id).status();
    const lines = [
      `${id}: ${s.softState.role} term=${s.hardState.term} vote=${s.hardState.vote ?? '-'} lead=${s.softState.lead ?? '-'} commit=${s.hardState.commit} applied=${s.applied} voters=${s.confState.voters.join(',')} learners=${s.confState.learners.join(',') || '-'}`,
    ];
    for (const [peer, p] of Object.entries(s.progress ?? {}).sort()) {
      lines.push(`  ${peer}: ${p.state} match=${p.match} next=${p.next}${p.isLearner ? ' learner' : ''}`);
    }
    return lines.join('\n');
  }

  private raftLog(id: string): string[] {
    const r = this.c.raft(id);
    const first = r.log.firstIndex();
    const ents = r.log.slice(first, r.log.lastIndex() + 1, 0);
    return ents.length === 0
      ? [`${id}: log empty (first index ${first})`]
      : ents.map((e) => `${id}: ${formatEntry(e)}`);
  }
}

function text(bytes: Uint8Array): string {
  return JSON.stringify(new TextDecoder().decode(bytes));
}

export function formatEntry(e: Entry): string {
  if (e.type === 'confChange') {
    const cc = decodeConfChange(e.data);
    return `${e.index}/${e.term} confChange ${cc.type} ${cc.nodeId}`;
  }
  return `${e.index}/${e.term} ${e.data.byteLength === 0 ? 'empty' : text(e.data)}`;
}

export function formatMessage(m: RaftMessage): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case 'preVote':
    case 'vote':
      return `${head} last=${m.lastLogIndex}/${m.lastLogTerm}${m.type === 'vote' && m.transfer ? ' transfer' : ''}`;
    case 'preVoteResponse':
    case 'voteResponse':
      return `${head} ${m.reject ? 'rejected' : 'granted'}`;
    case 'append':
      return `${head} prev=${m.prevLogIndex}/${m.prevLogTerm} commit=${m.commit} entries=[${m.entries.map(formatEntry).join(', ')}]`;
    case 'appendResponse':
      return m.reject
        ? `${head} reject index=${m.index} hint=${m.rejectHint}/${m.logTerm}`
        : `${head} index=${m.index}`;
    case 'heartbeat':
      return `${head} commit=${m.commit}${m.context.byteLength > 0 ? ` ctx=${text(m.context)}` : ''}`;
    case 'heartbeatResponse':
      return `${head}${m.context.byteLength > 0 ? ` ctx=${text(m.context)}` : ''}`;
    case 'snapshot':
      return `${head} snapshot=${m.metadata.index}/${m.metadata.term} offset=${m.offset}/${m.totalBytes} bytes=${m.data.byteLength}${m.done ? ' done' : ''}`;
    case 'propose':
      return `${head} entries=${m.entries.length}`;
    case 'readIndex':
      return `${head} ctx=${text(m.context)}`;
    case 'readIndexResponse':
      return `${head} index=${m.index} ctx=${text(m.context)}`;
    case 'transferLeader':
      return `${head} target=${m.target}`;
    case 'timeoutNow':
      return head;
  }
}
