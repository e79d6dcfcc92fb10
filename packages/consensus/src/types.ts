// The one consensus interface every engine (single, raft, multipaxos) implements. Everything above
// it — the shard and coordinator state machines, the gRPC services — is written against this file
// alone, so swapping engines changes nothing above it.

export type EngineName = 'single' | 'raft' | 'multipaxos';

/**
 * A deterministic state machine replicated by a consensus group. `apply` is called exactly once per
 * committed entry, in log order, on every replica; it must depend only on its current state and the
 * command (no clocks, no randomness) so that every replica reaches the same state.
 */
export interface StateMachine<Result> {
  /** Applies the committed command at log `index` and returns the result for its proposer. */
  apply(command: Uint8Array, index: number): Result;
  /** Serializes the whole state as of the last applied index. */
  snapshot(): Uint8Array;
  /**
   * Optional, for large states: the bytes of snapshot(), of the state as it is at the call (a
   * copy-on-write clone, say), produced piece by piece as the caller consumes them. The Raft driver
   * prefers it: a snapshot of a big state machine then neither stalls the requests in flight for
   * as long as serializing takes nor needs a buffer the size of the state. A piece may be a view of
   * a buffer the next one reuses: the caller is done with each piece before it asks for the next.
   * Commands applied after the call must not change the bytes produced.
   */
  snapshotChunks?(): AsyncIterable<Uint8Array>;
  /** Replaces the whole state with one produced by `snapshot()`. */
  restore(snapshot: Uint8Array): void;
}

/** Where to find the leader when this replica is not it. */
export interface LeaderHint {
  leaderId?: string;
  leaderAddress?: string;
}

/**
 * The outcome of a proposal. Expected outcomes are values, not exceptions (CONVENTIONS §3): a
 * follower answers `not_leader` with a hint; `dropped` means the entry was not appended (e.g. the
 * leader stepped down) and the caller may retry. `unknown` means the entry may or may not commit
 * (leadership lost after appending): retrying a non-idempotent command could apply it twice.
 */
export type ProposeOutcome<Result> =
  | { kind: 'applied'; index: number; result: Result }
  | ({ kind: 'not_leader' } & LeaderHint)
  | { kind: 'dropped'; reason: string }
  | { kind: 'unknown'; reason: string };

/**
 * A read barrier: once it resolves `ready`, this replica's state machine has applied every entry
 * committed before the barrier was requested, so a read of local state is linearizable.
 */
export type ReadBarrierOutcome = { kind: 'ready'; index: number } | ({ kind: 'not_leader' } & LeaderHint);

export type MemberRole = 'leader' | 'follower' | 'candidate' | 'learner';

export interface MemberInfo {
  memberId: string;
  address: string;
  voter: boolean;
}

export type MembershipChange =
  | { kind: 'add_learner'; memberId: string; address: string }
  | { kind: 'promote'; memberId: string }
  | { kind: 'remove'; memberId: string };

export type MembershipOutcome =
  | { kind: 'applied'; index: number; members: MemberInfo[] }
  | ({ kind: 'not_leader' } & LeaderHint)
  | { kind: 'rejected'; reason: string };

/**
 * The outcome of a leadership transfer. `transferred`: the named member leads (in `term`).
 * `failed`: the transfer was started but did not complete within an election timeout (the target
 * could not catch up or be reached), or another member won the election; this member may still
 * lead, and retrying is safe.
 */
export type TransferOutcome =
  | { kind: 'transferred'; leaderId: string; term: number }
  | ({ kind: 'not_leader' } & LeaderHint)
  | { kind: 'rejected'; reason: string }
  | { kind: 'failed'; reason: string };

export interface ConsensusStatus {
  engine: EngineName;
  memberId: string;
  role: MemberRole;
  /** Raft term / Paxos ballot; 0 for the single engine. */
  term: number;
  commitIndex: number;
  appliedIndex: number;
  /** Last index folded into the latest snapshot (0 when none). */
  snapshotIndex: number;
  leaderId?: string;
  leaderAddress?: string;
  members: MemberInfo[];
}

/** A replica of one consensus group. Methods may be called concurrently; the engine serializes. */
export interface ConsensusGroup<Result> {
  readonly engine: EngineName;
  /** Recovers state (snapshot, then log) and starts serving. */
  start(): Promise<void>;
  /** Replicates `command`; resolves once it is committed and applied (or with why not). */
  propose(command: Uint8Array): Promise<ProposeOutcome<Result>>;
  /** See ReadBarrierOutcome. */
  readBarrier(): Promise<ReadBarrierOutcome>;
  /** Adds, promotes or removes a member. */
  changeMembership(change: MembershipChange): Promise<MembershipOutcome>;
  /** On the leader: hands leadership to the voter `memberId` (Raft thesis §3.10); resolves once it leads, or with why not. */
  transferLeadership(memberId: string): Promise<TransferOutcome>;
  /**
   * Before a graceful stop: a leader with other voters hands leadership to the one whose log is
   * furthest along, so the group need not wait out an election timeout. Undefined when there is
   * nothing to hand over (not the leader, no other voter, or an engine without leaders). From
   * then on the member does not take leadership itself (it is about to stop).
   */
  handOffLeadership(): Promise<TransferOutcome | undefined>;
  /** Writes a snapshot of the state machine now and compacts the log behind it. */
  snapshotNow(): Promise<void>;
  status(): ConsensusStatus;
  /** Stops serving and closes storage; pending proposals resolve `dropped`. */
  stop(): Promise<void>;
}
