// The shape of the stored log as WAL records rebuild it, shared by recovery (which keeps whole
// entries) and the running storage (which keeps each live entry's term and WAL segment, to know
// which segments a snapshot makes obsolete).

/** Thrown when stored records cannot describe one contiguous log: the node's data is damaged. */
export class StoredLogGapError extends Error {
  constructor(message: string) {
    super(`${message}; the Raft log on disk is not contiguous. Restore this node's data from a replica or a backup.`);
    this.name = 'StoredLogGapError';
  }
}

export interface IndexedTerm {
  index: number;
  term: number;
}

export class StoredLog<T extends IndexedTerm> {
  /** Live entries, consecutive indexes. */
  private items: T[] = [];
  /**
   * Where the next entries record must start when `items` is empty: right after the last
   * snapshot. Undefined at the start of recovery, when segments before the first one read may
   * have been dropped behind a snapshot (the first record read then starts the log).
   */
  private nextWhenEmpty: number | undefined;

  constructor(nextWhenEmpty?: number) {
    this.nextWhenEmpty = nextWhenEmpty;
  }

  get entries(): readonly T[] {
    return this.items;
  }

  get firstIndex(): number | undefined {
    return this.items[0]?.index;
  }

  get lastIndex(): number | undefined {
    return this.items[this.items.length - 1]?.index;
  }

  /**
   * Appends consecutive entries. When the first is at or before the last stored index, the stored
   * suffix from there on is replaced (a follower repairing a divergent log, Raft §5.3).
   */
  append(batch: readonly T[]): void {
    const first = batch[0];
    if (first === undefined) return;
    const start = this.items[0];
    if (start === undefined) {
      if (this.nextWhenEmpty !== undefined && first.index > this.nextWhenEmpty) {
        throw new StoredLogGapError(`entries start at ${first.index} but the log continues at ${this.nextWhenEmpty}`);
      }
      // Entries at or before the last snapshot's index are already folded into it.
      const skip = this.nextWhenEmpty === undefined ? 0 : Math.max(0, this.nextWhenEmpty - first.index);
      this.items = batch.slice(skip);
      return;
    }
    const next = start.index + this.items.length;
    if (first.index > next) throw new StoredLogGapError(`entries start at ${first.index} but the log ends at ${next - 1}`);
    const keep = Math.max(0, first.index - start.index);
    this.items.length = keep;
    for (const item of batch) this.items.push(item);
  }

  /**
   * Folds everything up to `index` into a snapshot whose last entry has `term`. Entries after
   * `index` stay only if the stored entry at `index` has that term: by the Log Matching property
   * the log then agrees with the snapshot's log up to there (Raft §7: "If an existing log entry has
   * the same index and term as the snapshot's last included entry, retain log entries following
   * it"). Otherwise, or when the log ends before `index`, the whole log is discarded.
   */
  compact(index: number, term: number): void {
    const start = this.items[0];
    if (start !== undefined) {
      const position = index - start.index;
      if (position >= 0) {
        const atIndex = this.items[position];
        this.items = atIndex !== undefined && atIndex.term === term ? this.items.slice(position + 1) : [];
      }
      // position < 0: every stored entry is after `index` (the ones before were dropped with
      // older segments); nothing to fold.
    }
    if (this.items.length === 0) this.nextWhenEmpty = index + 1;
  }

  /** Applies `fn` to every live entry, e.g. to drop references recovery no longer needs. */
  map<U extends IndexedTerm>(fn: (item: T) => U): StoredLog<U> {
    const mapped = new StoredLog<U>(this.nextWhenEmpty);
    mapped.items = this.items.map(fn);
    return mapped;
  }
}
