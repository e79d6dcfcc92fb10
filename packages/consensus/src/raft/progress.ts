// What a leader knows about each follower (etcd-io/raft's tracker/progress.go), and the flow
// control that follows from it.
//
// - probe: the leader does not know where the follower's log matches. It sends one append at a time
//   and waits for the answer (or a heartbeat response) before sending the next, backing `next` off
//   on each rejection.
// - replicate: the follower matched recently; the leader streams appends optimistically, advancing
//   `next` as it sends, with at most maxInflightAppends unacknowledged appends in flight.
// - snapshot: the follower needs entries the leader compacted; nothing is sent until the snapshot
//   is acknowledged (append/snapshot response) or the driver reports the stream's outcome.
import type { NodeId } from './types.js';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** The indexes of the last entry of each unacknowledged append, oldest first (a sliding window). */
export class Inflights {
  private readonly lastIndexes: number[] = [];

  constructor(readonly capacity: number) {}

  add(lastIndex: number): void {
    if (this.full()) throw new Error('raft progress: inflight window overflow');
    this.lastIndexes.push(lastIndex);
  }

  /** An acknowledgement up to `index` frees every append that ended at or before it. */
  freeLE(index: number): void {
    while (this.lastIndexes.length > 0 && (this.lastIndexes[0] ?? Infinity) <= index) this.lastIndexes.shift();
  }

  freeFirstOne(): void {
    this.lastIndexes.shift();
  }

  full(): boolean {
    return this.lastIndexes.length >= this.capacity;
  }

  count(): number {
    return this.lastIndexes.length;
  }

  reset(): void {
    this.lastIndexes.length = 0;
  }
}

export class Progress {
  /** Highest index known to be durable in the follower's log and equal to ours. */
  match = 0;
  /** Next index to send. */
  next: number;
  state: ProgressState = 'probe';
  /** While in 'snapshot': the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round (thesis §6.2). */
  recentActive = false;
  /** 'probe' only: an append is outstanding, wait for its answer before the next one. */
  probeSent = false;
  /** The leader's tick count when it sent the newest heartbeat this follower acknowledged (leader lease). */
  ackedHeartbeatTick = -1;
  readonly inflights: Inflights;

  constructor(
    readonly id: NodeId,
    next: number,
    maxInflight: number,
    public isLearner: boolean,
  ) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot the follower holds at least the snapshot: probe right after it.
    if (this.state === 'snapshot') {
      const pendingSnapshot = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pendingSnapshot + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** An acknowledgement up to `index`: returns whether it told us something new. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejection of the append whose previous index was `rejected`; `matchHint` is the leader's best
   * guess of where the logs last agree (from the follower's hint, §5.3 fast backtracking). Returns
   * false for a stale rejection that must be ignored.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      // An append below what the follower already matched was rejected long ago: stale.
      if (rejected <= this.match) return false;
      // Pipelined appends got out of step with the follower: resume from what it surely has.
      this.next = this.match + 1;
      return true;
    }
    // In probe only the single outstanding append (prev index next-1) can be answered.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Records an append just sent with `count` entries ending at `lastIndex`. */
  sentEntries(count: number, lastIndex: number): void {
    switch (this.state) {
      case 'replicate':
        if (count > 0) {
          this.next = lastIndex + 1;
          this.inflights.add(lastIndex);
        }
        break;
      case 'probe':
        // Any append in probe state is a probe: wait for its answer.
        this.probeSent = true;
        break;
      case 'snapshot':
        throw new Error(`raft progress: append sent to ${this.id} while a snapshot is in flight`);
    }
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}
