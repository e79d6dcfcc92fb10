// Safety checkers that run continuously while the simulation runs, failing fast with a message that
// names the property, the servers and the indexes involved (Raft paper, Figure 3):
//
// - Election safety: at most one leader per term. Checked after every input to every core.
// - Log matching: if two logs hold an entry with the same index and term, the entries are identical
//   and so are the logs up to there. Checked incrementally on every durable write (each (index,
//   term) is recorded with its content and its predecessor's term — equal predecessors at every
//   index give equal prefixes by induction) and by a full pairwise comparison of the stored logs
//   from time to time.
// - Leader completeness: a new leader holds every entry committed in an earlier term. Checked on
//   the first Ready a leader hands out in its term, against every entry known committed so far.
// - State machine safety: no two servers commit or apply different entries at one index; and a
//   snapshot a server installs or takes holds exactly the state the others computed at its index.
//   An entry counts as committed as soon as a server hands it out to be applied (a Ready's
//   committedEntries), before its fsync: a server that crashes before applying it has still
//   declared it committed, and a later leader must hold it.
// - Durability (the driver contract of core.ts): a vote grant, a vote request and an append or
//   snapshot acknowledgement may only leave once what they promise is on disk.
// - Read index (thesis §6.4): when a leader answers a read it received at tick t — through a
//   heartbeat round or under its lease — the read index covers every index committed anywhere by
//   t, and no leader of a later term had been elected by t. Both must hold for any correct read
//   path; they catch a stale read at once, where the client history shows it only if some client
//   happens to observe it.
//
// Linearizability of the clients' history is checked at the end of a run (simulator.ts).
import { describeEntry } from '../raft/testing/format.js';
import type { Entry, Message, NodeId } from '../raft/types.js';
import type { KvSnapshotData } from './kv.js';
import { hashString } from './rng.js';
import type { SimDisk } from './storage.js';

/** A broken property: the run fails with this check's name and message. */
export class CheckFailure extends Error {
  constructor(
    readonly check: string,
    message: string,
  ) {
    super(message);
    this.name = 'CheckFailure';
  }
}

/** A server's log as the checker sees it. */
export interface LogView {
  /** Entries up to here are folded into a snapshot. */
  snapshotIndex: number;
  lastIndex: number;
  entryAt(index: number): Entry | undefined;
}

interface StoredAt {
  content: string;
  /** The term of the entry before it (undefined when the writer did not hold it). */
  prevTerm: number | undefined;
  node: NodeId;
}

interface CommittedAt {
  term: number;
  content: string;
  node: NodeId;
  /** 'committed' (handed out to apply) or 'applied'. */
  how: string;
}

/** Checks a test may switch off, to show that a later check (the history's) catches the same bug. */
export type OptionalCheck = 'read index';

export function entryContent(e: Entry): string {
  return describeEntry(e);
}

/** A hash of a state machine snapshot's contents. */
export function stateHash(data: KvSnapshotData): number {
  let h = 0x2545f491;
  for (const [key, value, version] of data) {
    h = Math.imul(h ^ hashString(key), 0x01000193);
    h = Math.imul(h ^ hashString(value), 0x01000193);
    h = Math.imul(h ^ version, 0x01000193);
  }
  return h >>> 0;
}

export class SafetyCheckers {
  private readonly leaders = new Map<number, NodeId>();
  /** Elections in the order observed: tick, and the highest term elected by then. */
  private readonly electionTicks: number[] = [];
  private readonly highestTermBy: number[] = [];
  /** The highest commit index any server has had. */
  private maxCommit = 0;
  /** Reads a leader received: `${context}@${leader}` → when, in which term, and the commit floor then. */
  private readonly readsReceived = new Map<string, { tick: number; term: number; floor: number }>();
  /** index → term → what was stored there. */
  private readonly stored = new Map<number, Map<number, StoredAt>>();
  private readonly committed = new Map<number, CommittedAt>();
  /** index → hash of the state machine after applying it (the first server to get there). */
  private readonly states = new Map<number, { hash: number; node: NodeId }>();
  private maxCommitted = 0;
  private readonly readIndexChecked: boolean;
  leaderElections = 0;

  constructor(skip: readonly OptionalCheck[] = []) {
    this.readIndexChecked = !skip.includes('read index');
  }

  /** Election safety: called whenever a server is (still) leader of `term`. */
  onLeader(node: NodeId, term: number, tick: number): void {
    const known = this.leaders.get(term);
    if (known === undefined) {
      this.leaders.set(term, node);
      this.leaderElections++;
      this.electionTicks.push(tick);
      this.highestTermBy.push(Math.max(term, this.highestTermBy.at(-1) ?? 0));
      return;
    }
    if (known !== node) throw new CheckFailure('election safety', `${known} and ${node} are both leader of term ${term}`);
  }

  /** A server's commit index, after any input. */
  onCommit(commit: number): void {
    if (commit > this.maxCommit) this.maxCommit = commit;
  }

  /** `leader`, leader of `term`, received read `context` now (the first time counts). */
  onReadReceived(leader: NodeId, context: string, term: number, tick: number): void {
    const key = `${context}@${leader}`;
    if (!this.readsReceived.has(key)) this.readsReceived.set(key, { tick, term, floor: this.maxCommit });
  }

  /** `leader` answers read `context` with read index `index`. */
  onReadAnswered(leader: NodeId, context: string, index: number): void {
    const key = `${context}@${leader}`;
    const read = this.readsReceived.get(key);
    if (read === undefined) return;
    this.readsReceived.delete(key);
    if (!this.readIndexChecked) return;
    if (index < read.floor) {
      throw new CheckFailure(
        'read index',
        `${leader} (term ${read.term}) answers read ${context} with read index ${index}, ` +
          `but index ${read.floor} was already committed when it received the read at t=${read.tick}`,
      );
    }
    const newer = this.highestTermElectedBy(read.tick);
    if (newer > read.term) {
      throw new CheckFailure(
        'read index',
        `${leader} (term ${read.term}) answers read ${context} received at t=${read.tick}, ` +
          `but ${this.leaders.get(newer) ?? '?'} had been elected leader of term ${newer} by then`,
      );
    }
  }

  private highestTermElectedBy(tick: number): number {
    let lo = 0;
    let hi = this.electionTicks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.electionTicks[mid] ?? 0) <= tick) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? 0 : (this.highestTermBy[lo - 1] ?? 0);
  }

  /** Log matching, incrementally: `entries` were just made durable on `node` (`disk` holds them now). */
  onDurableEntries(node: NodeId, entries: readonly Entry[], disk: SimDisk): void {
    let prevTerm = entries[0] === undefined ? undefined : disk.termAt(entries[0].index - 1);
    for (const e of entries) {
      const content = entryContent(e);
      let byTerm = this.stored.get(e.index);
      if (byTerm === undefined) {
        byTerm = new Map();
        this.stored.set(e.index, byTerm);
      }
      const seen = byTerm.get(e.term);
      if (seen === undefined) {
        byTerm.set(e.term, { content, prevTerm, node });
      } else {
        if (seen.content !== content) {
          throw new CheckFailure(
            'log matching',
            `index ${e.index} term ${e.term} holds different entries: "${seen.content}" on ${seen.node}, "${content}" on ${node}`,
          );
        }
        if (seen.prevTerm !== undefined && prevTerm !== undefined && seen.prevTerm !== prevTerm) {
          throw new CheckFailure(
            'log matching',
            `entry ${e.term}/${e.index} follows term ${seen.prevTerm} on ${seen.node} but term ${prevTerm} on ${node}: the prefixes differ`,
          );
        }
        if (seen.prevTerm === undefined) seen.prevTerm = prevTerm;
      }
      prevTerm = e.term;
    }
  }

  /** State machine safety, at commit: `node` hands out `entries` to be applied once durable. */
  onCommitted(node: NodeId, entries: readonly Entry[]): void {
    for (const e of entries) this.recordCommitted(node, e, 'committed');
  }

  /** State machine safety: `node` applies `e`; `stateAfter` hashes its state machine afterwards. */
  onApply(node: NodeId, e: Entry, stateAfter: number): void {
    this.recordCommitted(node, e, 'applied');
    this.onState(node, e.index, stateAfter, 'after applying');
  }

  private recordCommitted(node: NodeId, e: Entry, how: string): void {
    const content = entryContent(e);
    const before = this.committed.get(e.index);
    if (before === undefined) {
      this.committed.set(e.index, { term: e.term, content, node, how });
      if (e.index > this.maxCommitted) this.maxCommitted = e.index;
    } else if (before.content !== content) {
      throw new CheckFailure(
        'state machine safety',
        `index ${e.index} ${before.how} as "${before.content}" on ${before.node} but ${how} as "${content}" on ${node}`,
      );
    }
  }

  /** State machine safety for snapshots: the state at `index` must be the one every server computed. */
  onState(node: NodeId, index: number, hash: number, how: string): void {
    const known = this.states.get(index);
    if (known === undefined) {
      this.states.set(index, { hash, node });
    } else if (known.hash !== hash) {
      throw new CheckFailure(
        'state machine safety',
        `the state machine of ${node} ${how} index ${index} differs from the one ${known.node} had there`,
      );
    }
  }

  /** Leader completeness: `node`, leader of `term`, must hold every entry committed anywhere so far. */
  onNewLeader(node: NodeId, term: number, log: LogView): void {
    for (let index = log.snapshotIndex + 1; index <= this.maxCommitted; index++) {
      const committed = this.committed.get(index);
      if (committed === undefined || committed.term >= term) continue;
      const held = index <= log.lastIndex ? log.entryAt(index) : undefined;
      if (held === undefined || entryContent(held) !== committed.content) {
        throw new CheckFailure(
          'leader completeness',
          `${node} leads term ${term} without the entry "${committed.content}" at index ${index}, ${committed.how} on ${committed.node} ` +
            `(it holds ${held === undefined ? 'nothing' : `"${entryContent(held)}"`}; log ${log.snapshotIndex + 1}..${log.lastIndex})`,
        );
      }
    }
  }

  /** Durability: `m` is about to leave `node` as a "send after persist" message; `disk` is what is durable. */
  onSendAfterPersist(node: NodeId, m: Message, disk: SimDisk): void {
    const durable = disk.hardState;
    const fail = (what: string): never => {
      throw new CheckFailure(
        'durability',
        `${node} sends ${m.type} (term ${m.term}, index ${m.index}) before ${what} is durable ` +
          `(on disk: term ${durable.term}, vote ${durable.vote || '-'}, log ${disk.firstIndex()}..${disk.lastIndex()})`,
      );
    };
    switch (m.type) {
      case 'vote':
        if (durable.term < m.term || (durable.term === m.term && durable.vote !== node)) fail(`its candidacy in term ${m.term}`);
        break;
      case 'vote_response':
        if (!m.reject && durable.term <= m.term && !(durable.term === m.term && durable.vote === m.to)) {
          fail(`its vote for ${m.to} in term ${m.term}`);
        }
        break;
      case 'append_response':
      case 'snapshot_response':
        // A server that moved to a later term since acknowledging no longer speaks for that term.
        if (!m.reject && durable.term <= m.term && disk.lastIndex() < m.index) fail(`the log up to ${m.index}`);
        break;
      default:
        break;
    }
  }

  /** Log matching, exhaustively: compares every pair of stored logs. */
  compareLogs(logs: readonly { node: NodeId; disk: SimDisk }[]): void {
    for (let i = 0; i < logs.length; i++) {
      for (let j = i + 1; j < logs.length; j++) {
        const a = logs[i]!;
        const b = logs[j]!;
        const from = Math.max(a.disk.firstIndex(), b.disk.firstIndex());
        const to = Math.min(a.disk.lastIndex(), b.disk.lastIndex());
        let agreed = false;
        for (let index = to; index >= from; index--) {
          const ea = a.disk.entryAt(index);
          const eb = b.disk.entryAt(index);
          if (ea === undefined || eb === undefined) continue;
          if (!agreed && ea.term === eb.term) agreed = true;
          if (agreed && entryContent(ea) !== entryContent(eb)) {
            throw new CheckFailure(
              'log matching',
              `${a.node} and ${b.node} agree on a later index but differ at ${index}: "${entryContent(ea)}" vs "${entryContent(eb)}"`,
            );
          }
        }
      }
    }
  }

  /** The highest index known committed (handed out to apply) anywhere. */
  get highestCommitted(): number {
    return this.maxCommitted;
  }

  /** The highest commit index any server has had. */
  get highestCommitIndex(): number {
    return this.maxCommit;
  }
}
