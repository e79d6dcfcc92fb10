// The Raft log as the core sees it (etcd-io/raft's raftLog + unstable, folded into one structure).
//
// The core keeps every entry after the latest snapshot in memory: the driver hands them over at
// construction (RaftRestoredState.entries) and compact() drops the prefix once the state machine has
// snapshotted it. That keeps the core free of any storage interface (CONVENTIONS §1): the log below
// is the single source of truth, and the Ready carries the part of it that is not durable yet.
//
//   snapshot boundary        stable (durable)           unstable (next Ready.entries)
//   ───────────┤ offsetIndex │ ... stableIndex │ stableIndex+1 ... lastIndex
//
// Invariants (a violation throws — it means a bug in the core or a driver that broke its contract):
//   offsetIndex ≤ applied ≤ committed ≤ lastIndex; applied ≤ stableIndex unless a snapshot is pending;
//   entries are contiguous and their terms never decrease.
import type { Entry, SnapshotMeta } from './types.js';

/** A position in the log: an index and the term of the entry there. */
export interface LogPosition {
  index: number;
  term: number;
}

/** What maybeAppend changed, when the append matched. */
export interface AppendOutcome {
  /** Index of the last entry carried by the append (what the follower acknowledges). */
  lastNewIndex: number;
  /** Set when entries were (re)written from this index on: conflicting suffixes are gone (§5.3). */
  rewrittenFrom?: number;
}

/** Payload bytes of an entry: what maxAppendBytes counts. Framing overhead is the driver's concern. */
export function entryBytes(entry: Entry): number {
  return entry.data.byteLength;
}

export class RaftLog {
  /** Index and term of the entry just before entries[0]: the snapshot's last entry, or 0/0. */
  private offsetIndex: number;
  private offsetTerm: number;
  /** The latest snapshot (installed from the leader or taken by compact()); undefined before any. */
  private snapshot: SnapshotMeta | undefined;
  /** Entries offsetIndex+1 .. lastIndex. */
  private entries: Entry[];
  /** A snapshot received from the leader that is not durable yet (Ready.snapshot until advance()). */
  private pending: SnapshotMeta | undefined;
  /** Highest index known durable and identical to the in-memory entry. */
  private stableIndex: number;
  committed: number;
  applied: number;

  constructor(snapshot: SnapshotMeta | undefined, entries: Entry[], committed: number, applied: number) {
    this.snapshot = snapshot;
    this.offsetIndex = snapshot?.index ?? 0;
    this.offsetTerm = snapshot?.term ?? 0;
    this.pending = undefined;
    checkContiguous(this.offsetIndex, this.offsetTerm, entries, 'restored entries');
    this.entries = entries.slice();
    this.stableIndex = this.lastIndex();
    // A snapshot only ever holds committed entries, so its index is committed even if the stored
    // commit index was written before it.
    this.committed = Math.max(committed, this.offsetIndex);
    if (this.committed > this.lastIndex()) {
      throw new Error(`raft log: restored commit index ${committed} is beyond the last entry ${this.lastIndex()}`);
    }
    if (applied < this.offsetIndex || applied > this.committed) {
      throw new Error(
        `raft log: restored applied index ${applied} must lie between the snapshot index ${this.offsetIndex} and the commit index ${this.committed}`,
      );
    }
    this.applied = applied;
  }

  firstIndex(): number {
    return this.offsetIndex + 1;
  }

  lastIndex(): number {
    return this.offsetIndex + this.entries.length;
  }

  lastTerm(): number {
    return this.entries.at(-1)?.term ?? this.offsetTerm;
  }

  /** The term of the entry at `index`, or undefined when it is compacted away or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.offsetIndex) return this.offsetTerm;
    if (index < this.offsetIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.offsetIndex - 1]?.term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.offsetIndex) return undefined;
    return this.entries[index - this.offsetIndex - 1];
  }

  /** The latest snapshot's metadata (what a leader sends a follower that needs compacted entries). */
  snapshotMeta(): SnapshotMeta | undefined {
    return this.snapshot;
  }

  /** The snapshot received from a leader that the driver has not persisted yet. */
  pendingSnapshot(): SnapshotMeta | undefined {
    return this.pending;
  }

  /**
   * §5.4.1: a candidate's log is at least as up to date as ours when its last term is higher, or
   * equal with an index at least as high. The term is compared first: a long log of stale entries
   * must lose against a short log that reaches a later term.
   */
  isUpToDate(lastTerm: number, lastIndex: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in [lo, hi), at most maxEntries and maxBytes (but always the first one, so a big entry still moves). */
  slice(lo: number, hi: number, maxEntries = Infinity, maxBytes = Infinity): Entry[] {
    if (lo <= this.offsetIndex) throw new Error(`raft log: slice from ${lo} reaches into the snapshot (first index ${this.firstIndex()})`);
    if (hi > this.lastIndex() + 1) throw new Error(`raft log: slice to ${hi} is beyond the last index ${this.lastIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let index = lo; index < hi && out.length < maxEntries; index++) {
      const entry = this.entries[index - this.offsetIndex - 1];
      if (entry === undefined) break;
      const size = entryBytes(entry);
      if (out.length > 0 && bytes + size > maxBytes) break;
      bytes += size;
      out.push(entry);
    }
    return out;
  }

  /** Leader path: appends entries of its own at the end of the log. */
  append(entries: Entry[]): void {
    checkContiguous(this.lastIndex(), this.lastTerm(), entries, 'appended entries');
    this.entries.push(...entries);
  }

  /**
   * Follower path (§5.3): when our entry at prevIndex has prevTerm, keep the entries we agree on,
   * delete the first conflicting entry and everything after it, append the rest, and advance the
   * commit index to min(leaderCommit, index of the last new entry). Returns undefined when the
   * consistency check fails.
   */
  maybeAppend(prevIndex: number, prevTerm: number, leaderCommit: number, entries: Entry[]): AppendOutcome | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    checkContiguousIndexes(prevIndex, entries, 'append');
    const lastNewIndex = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    const outcome: AppendOutcome = { lastNewIndex };
    if (conflict !== 0) {
      if (conflict <= this.committed) {
        throw new Error(`raft log: entry ${conflict} conflicts with the leader but is already committed (commit ${this.committed})`);
      }
      this.truncateAndAppend(entries.slice(conflict - prevIndex - 1));
      outcome.rewrittenFrom = conflict;
    }
    this.commitTo(Math.min(leaderCommit, lastNewIndex));
    return outcome;
  }

  /**
   * The first index among `entries` that is missing or has a different term here, or 0 when we
   * already hold all of them. An append whose entries we already have must not truncate anything: a
   * stale, reordered append would otherwise delete entries we acknowledged.
   */
  private findConflict(entries: Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  private truncateAndAppend(entries: Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    if (first.index <= this.offsetIndex) {
      throw new Error(`raft log: cannot rewrite entry ${first.index}, it is inside the snapshot`);
    }
    this.entries.length = first.index - this.offsetIndex - 1;
    this.stableIndex = Math.min(this.stableIndex, first.index - 1);
    this.append(entries);
  }

  /**
   * Fast log backtracking (etcd's findConflictByTerm): the largest index ≤ `index` whose term is ≤
   * `term`, with that term. Every entry above it has a term greater than `term`, so none of them can
   * match a log whose entry at `index` has `term`: one round trip skips a whole divergent term.
   * When the lookup runs into the snapshot the answer stops there, with term 0 (unknown).
   */
  findConflictByTerm(index: number, term: number): LogPosition {
    let at = Math.min(index, this.lastIndex());
    for (;;) {
      const t = this.term(at);
      if (t === undefined) return { index: at, term: 0 };
      if (t <= term) return { index: at, term: t };
      at--;
    }
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    if (index > this.lastIndex()) {
      throw new Error(`raft log: commit index ${index} is beyond the last index ${this.lastIndex()}`);
    }
    this.committed = index;
  }

  appliedTo(index: number): void {
    if (index > this.committed) throw new Error(`raft log: applied ${index} beyond commit ${this.committed}`);
    if (index > this.applied) this.applied = index;
  }

  /** Replaces the whole log by a snapshot received from the leader (§7). */
  restore(snapshot: SnapshotMeta): void {
    this.offsetIndex = snapshot.index;
    this.offsetTerm = snapshot.term;
    this.entries = [];
    this.snapshot = snapshot;
    this.pending = snapshot;
    this.committed = snapshot.index;
  }

  /** Drops entries ≤ index (already folded into a snapshot the driver holds). */
  compact(snapshot: SnapshotMeta): void {
    const { index } = snapshot;
    if (index <= this.offsetIndex) return;
    if (index > this.applied) throw new Error(`raft log: cannot compact to ${index}, only ${this.applied} is applied`);
    if (this.pending !== undefined || index > this.stableIndex) {
      throw new Error(`raft log: cannot compact to ${index}, it is not durable yet`);
    }
    const term = this.term(index);
    if (term !== snapshot.term) throw new Error(`raft log: snapshot term ${snapshot.term} at ${index} does not match the log (${term})`);
    this.entries = this.entries.slice(index - this.offsetIndex);
    this.offsetIndex = index;
    this.offsetTerm = term;
    this.snapshot = snapshot;
  }

  /** Highest index that is durable on this node (0 while a received snapshot is being persisted). */
  persistedIndex(): number {
    return this.pending === undefined ? this.stableIndex : 0;
  }

  /** Entries the driver has not persisted yet, in order. */
  unstableEntries(): Entry[] {
    const from = this.pending === undefined ? this.stableIndex + 1 : this.offsetIndex + 1;
    if (from > this.lastIndex()) return [];
    return this.entries.slice(from - this.offsetIndex - 1);
  }

  hasUnstableEntries(): boolean {
    return this.pending !== undefined ? this.entries.length > 0 : this.stableIndex < this.lastIndex();
  }

  /** The driver persisted entries up to `position`; ignored if the log has been rewritten since. */
  stableTo(position: LogPosition): void {
    if (this.pending !== undefined) return;
    if (position.index > this.stableIndex && this.matchTerm(position.index, position.term)) {
      this.stableIndex = position.index;
    }
  }

  /** The driver persisted the snapshot at `index`; ignored if a newer one replaced it meanwhile. */
  stableSnapshotTo(index: number): void {
    if (this.pending?.index === index) {
      this.pending = undefined;
      this.stableIndex = index;
    }
  }

  /**
   * Committed entries not yet handed to the state machine. They may still be in this Ready's
   * `entries`: the driver persists before it applies. Nothing is applied while a received snapshot
   * is pending: the state machine must be restored from it first.
   */
  nextCommittedEntries(): Entry[] {
    if (this.pending !== undefined || this.applied >= this.committed) return [];
    if (this.applied < this.offsetIndex) {
      throw new Error(`raft log: applied ${this.applied} is behind the snapshot ${this.offsetIndex}`);
    }
    return this.slice(this.applied + 1, this.committed + 1);
  }

  hasNextCommittedEntries(): boolean {
    return this.pending === undefined && this.applied < this.committed;
  }
}

function checkContiguousIndexes(prevIndex: number, entries: Entry[], what: string): void {
  entries.forEach((entry, i) => {
    if (entry.index !== prevIndex + 1 + i) {
      throw new Error(`raft log: ${what} must be contiguous after ${prevIndex}, found index ${entry.index} at position ${i}`);
    }
  });
}

function checkContiguous(prevIndex: number, prevTerm: number, entries: Entry[], what: string): void {
  checkContiguousIndexes(prevIndex, entries, what);
  let term = prevTerm;
  for (const entry of entries) {
    if (entry.term < term) throw new Error(`raft log: ${what}: term decreases at index ${entry.index} (${entry.term} < ${term})`);
    term = entry.term;
  }
}
