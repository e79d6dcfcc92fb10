// The data the Raft core consumes and produces. The core (core.ts) is a deterministic state machine
// with no I/O (CONVENTIONS §1, etcd-io/raft's RawNode): the driver feeds it ticks, messages and
// proposals, then collects a Ready — what to persist, what to send, what to apply — performs it in
// the order persist → send → apply, and calls advance(). These types are plain data so that the
// simulator, the golden interaction scripts and the gRPC driver all speak to the same core.

export type NodeId = string;

export type EntryType = 'normal' | 'conf_change' | 'noop';

/** One log entry. `data` is the state-machine command (normal) or an encoded MembershipChange. */
export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

export type MessageType =
  | 'pre_vote'
  | 'pre_vote_response'
  | 'vote'
  | 'vote_response'
  | 'append'
  | 'append_response'
  | 'heartbeat'
  | 'heartbeat_response'
  | 'snapshot'
  | 'snapshot_response'
  | 'timeout_now'
  | 'read_index'
  | 'read_index_response';

/**
 * One Raft message (etcd's raftpb.Message, trimmed). Field use by type:
 * - pre_vote / vote: term (the candidate's, or term+1 for a pre-vote), logTerm/index of the
 *   candidate's last entry.
 * - *_response: reject; for append_response `index` is the last index the follower now matches
 *   (accept) or the rejected probe index (reject), with rejectHint/logTerm for fast backtracking.
 * - append: logTerm/index of the entry preceding `entries`, commit.
 * - heartbeat: commit (capped at what the follower is known to match), context (read-index round).
 * - snapshot: snapshot metadata; the driver attaches and streams the data itself.
 * - read_index (follower → leader) / read_index_response: context identifies the request; index.
 */
export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  logTerm: number;
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  rejectHint: number;
  context?: Uint8Array;
  snapshot?: SnapshotMeta;
}

/** What must be durable before any vote grant or append acknowledgement leaves the node. */
export interface HardState {
  term: number;
  /** The candidate voted for in `term`, or '' for none. */
  vote: NodeId | '';
  commit: number;
}

export interface Membership {
  voters: NodeId[];
  learners: NodeId[];
}

/** One server at a time (Raft thesis §4.1): each change differs from the current config by one node. */
export type MembershipChange =
  | { kind: 'add_learner'; node: NodeId }
  | { kind: 'promote'; node: NodeId }
  | { kind: 'remove'; node: NodeId };

export interface SnapshotMeta {
  /** Last log index folded into the snapshot, and its term. */
  index: number;
  term: number;
  /** The membership as of `index`. */
  membership: Membership;
}

export type Role = 'follower' | 'pre_candidate' | 'candidate' | 'leader';

export interface SoftState {
  role: Role;
  leaderId: NodeId | '';
}

/** A linearizable read is safe once the applied index reaches `index` (ReadIndex, thesis §6.4). */
export interface ReadState {
  index: number;
  context: Uint8Array;
}

export interface Ready {
  /** Present when role or leader changed since the last Ready. */
  softState?: SoftState;
  /** Present when term, vote or commit changed: persist it. */
  hardState?: HardState;
  /**
   * Entries to append to stable storage. entries[0].index may be ≤ the last stored index: the
   * stored suffix from there on is replaced (a follower repairing a divergent log, §5.3).
   */
  entries: Entry[];
  /** A snapshot received from the leader: persist it (replacing the log before it), then restore the state machine from it. */
  snapshot?: SnapshotMeta;
  /** May be sent before persisting (the leader's appends to followers may overlap its own write, thesis §10.2.1). */
  messages: Message[];
  /** Only after hardState/entries/snapshot of this Ready are durable: vote grants, append acknowledgements. */
  messagesAfterPersist: Message[];
  /** Committed entries to apply, in order, after persisting. */
  committedEntries: Entry[];
  readStates: ReadState[];
}

export interface RaftConfig {
  id: NodeId;
  /** Ticks without hearing from a leader before a follower campaigns; randomized in [e, 2e). */
  electionTicks: number;
  /** A leader sends heartbeats every this many ticks. Must be < electionTicks. */
  heartbeatTicks: number;
  /** Pre-vote (thesis §9.6): a node that cannot win does not bump terms and disrupt the cluster. */
  preVote: boolean;
  /** A leader that has not heard from a quorum for an election timeout steps down (thesis §6.2). */
  checkQuorum: boolean;
  /** Most entries / bytes in one append message. */
  maxAppendEntries: number;
  maxAppendBytes: number;
  /** Most append messages in flight to one follower before waiting for acknowledgements. */
  maxInflightAppends: number;
  /** Seeded PRNG in [0, 1): the only source of randomness (election timeout jitter). */
  random: () => number;
}

/** What the core is constructed from after a restart (or at bootstrap, with empty log). */
export interface RaftRestoredState {
  hardState: HardState;
  /** The latest snapshot's metadata, when the log was compacted. */
  snapshot?: SnapshotMeta;
  /** Stored entries after the snapshot (or from index 1), in order. */
  entries: Entry[];
  /** Membership at bootstrap, when there is neither a snapshot nor conf-change entries. */
  initialMembership: Membership;
  /** Highest index the state machine has applied (from the snapshot it restored, at least). */
  applied: number;
}

export type ProposeResult =
  | { kind: 'accepted'; index: number; term: number }
  | { kind: 'not_leader'; leaderId: NodeId | '' }
  | { kind: 'dropped'; reason: string };

export interface RaftStatus {
  id: NodeId;
  role: Role;
  leaderId: NodeId | '';
  term: number;
  vote: NodeId | '';
  commit: number;
  applied: number;
  lastIndex: number;
  firstIndex: number;
  membership: Membership;
  /** Leader only: the member leadership is being transferred to, '' when none. */
  leadTransferee?: NodeId | '';
  /** Leader only: what each follower is known to match and the next index to send. */
  progress?: Record<NodeId, { match: number; next: number; state: 'probe' | 'replicate' | 'snapshot' }>;
}
