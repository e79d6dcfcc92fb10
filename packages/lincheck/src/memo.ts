// The memo table of the search: which (linearized set, state) nodes were already entered.
//
// A node is skipped when a recorded one has an equal state and a linearized set that differs only
// by having fewer operations of unknown outcome (see checker.ts for why that is sound). Sets are
// bitsets over the partition's operations, stored back to back in one growing arena rather than as
// one typed array each: a history of a few thousand operations on one key can record millions of
// nodes, and per-object overhead would then dominate.

/** Bytes per recorded node besides its bitset: state reference, bucket slot, map entry (estimated). */
const ENTRY_OVERHEAD_BYTES = 48;

export class VisitedNodes<State> {
  private arena: Uint32Array;
  private states: State[] = [];
  /** Zobrist-and-state hash → recorded node ids (one id, or a list for collisions and near misses). */
  private readonly buckets = new Map<number, number | number[]>();
  private readonly entryBytes: number;
  private count = 0;

  constructor(
    private readonly words: number,
    /** Bits of the operations with a known outcome: those must match exactly. */
    private readonly completedMask: Uint32Array,
    private readonly equal: (a: State, b: State) => boolean,
    private readonly maxBytes: number,
  ) {
    this.arena = new Uint32Array(Math.max(words, 1) * 1024);
    this.entryBytes = 4 * words + ENTRY_OVERHEAD_BYTES;
  }

  /**
   * Records the node (set, state) under `key` and returns true, or returns false when a recorded
   * node covers it. Recorded nodes the new one covers are dropped from their bucket.
   */
  visit(key: number, set: Uint32Array, state: State): boolean {
    if (this.count * this.entryBytes > this.maxBytes) this.clear();
    const found = this.buckets.get(key);
    if (found === undefined) {
      this.buckets.set(key, this.record(set, state));
      return true;
    }
    const ids = typeof found === 'number' ? [found] : found;
    for (const id of ids) if (this.covers(id, set, false) && this.equal(this.states[id]!, state)) return false;
    const kept = ids.filter((id) => !(this.covers(id, set, true) && this.equal(this.states[id]!, state)));
    kept.push(this.record(set, state));
    this.buckets.set(key, kept.length === 1 ? kept[0]! : kept);
    return true;
  }

  /**
   * reversed false: whether recorded node `id` covers `set` (its set is `set` minus some unknown
   * operations). reversed true: whether `set` covers node `id`.
   */
  private covers(id: number, set: Uint32Array, reversed: boolean): boolean {
    const base = id * this.words;
    for (let w = 0; w < this.words; w++) {
      const recorded = this.arena[base + w]!;
      const smaller = reversed ? set[w]! : recorded;
      const larger = reversed ? recorded : set[w]!;
      if ((smaller & ~larger) !== 0 || ((smaller ^ larger) & this.completedMask[w]!) !== 0) return false;
    }
    return true;
  }

  private record(set: Uint32Array, state: State): number {
    const id = this.count++;
    const base = id * this.words;
    if (base + this.words > this.arena.length) {
      const grown = new Uint32Array(Math.max(this.arena.length * 2, base + this.words));
      grown.set(this.arena);
      this.arena = grown;
    }
    this.arena.set(set, base);
    this.states.push(state);
    return id;
  }

  /**
   * Forgets everything, to bound memory. Safe: every skip is justified by a node that really was
   * searched; forgetting only means some work may be repeated.
   */
  private clear(): void {
    this.buckets.clear();
    this.states = [];
    this.count = 0;
  }
}
