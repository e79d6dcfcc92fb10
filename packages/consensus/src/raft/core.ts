// The Raft core: a deterministic state machine with no I/O (CONVENTIONS §1, etcd-io/raft's RawNode).
// The driver feeds it ticks, messages and proposals, then collects a Ready and performs it.
//
// THE DRIVER CONTRACT
//   loop:
//     feed events: tick() / step(message) / propose(...) / readIndex(...) / ...
//     if hasReady():
//       rd = ready()
//       1. persist, atomically or in this order: rd.snapshot (replaces the whole stored log and the
//          state machine's snapshot), rd.entries (entries[0].index may be ≤ the last stored index:
//          the stored suffix from there on is replaced), rd.hardState. fsync.
//          rd.messages may be sent before or while this happens: nothing in them depends on it.
//       2. send rd.messagesAfterPersist, only now: vote requests and (pre-)vote responses, append and
//          snapshot acknowledgements (messages.ts says why each must wait).
//       3. if rd.snapshot: restore the state machine from the snapshot data; then apply
//          rd.committedEntries in order (they may include entries of rd.entries, now durable).
//          Committed entries already durable before this Ready (index below rd.entries[0] and
//          not beyond the stored log) may be applied before or during step 1, when there is no
//          rd.snapshot; so may rd.readStates be delivered.
//       4. deliver rd.readStates: a read is linearizable once applied ≥ readState.index.
//       5. advance()
//   ready() may not be called again before advance() (hasReady() is false meanwhile). Events may
//   still be fed between ready() and advance(); what they produce goes into the next Ready.
//
//   Restart: construct from what was persisted (RaftRestoredState); `applied` is the index the
//   state machine was restored to (the snapshot's); committed entries after it are handed out again.
//
//   Snapshots: after the state machine snapshotted at index i (≤ applied), store snapshotMetaAt(i)
//   with the data, then call compact(i); do it between Readies, after the messages of the last one
//   were sent. A 'snapshot' message names the latest snapshot as of ready(): stream that one's
//   data, step the message into the follower's core once its data is at hand, and ALWAYS report
//   the outcome to the leader with reportSnapshot(to, ok) — until then the leader sends that
//   follower nothing.
//
//   Membership: conf_change entries carry a JSON encoding of the change and of the resulting
//   membership (membership.ts). A configuration takes effect when its entry is APPENDED (also on
//   followers, and it is rolled back if a new leader truncates the entry), so membership() can
//   change on step(); connect to its members. A server that joins an existing group starts with an
//   empty log and an empty initialMembership; it learns the configuration from the log or from a
//   snapshot.
//
//   Reads: readIndex contexts must be unique (the transport echoes them). A pending read is
//   dropped without an answer when leadership changes: time out and retry. In 'lease_based' mode
//   heartbeat.index carries the leader's tick count and heartbeat_response echoes it: the wire
//   codec must keep both.
//
// Roles are step functions swapped on role change (stepFollower / stepCandidate / stepLeader), and
// timers are ticks (tickElection / tickHeartbeat). Broken invariants throw; expected outcomes
// (not leader, dropped proposal) are return values.
import { normalizeOptions, type NormalizedOptions, type RaftCoreOptions } from './config.js';
import { RaftLog, type LogPosition } from './log.js';
import {
  ConfigHistory,
  applyMembershipChange,
  cloneMembership,
  encodeConfChange,
  isVoter,
  membershipChangeProblem,
} from './membership.js';
import { TRANSFER_CONTEXT, isLeaderMessage, isTransferContext, mustWaitForPersist, newMessage, type MessageFields } from './messages.js';
import { NO_MUTATIONS, type RaftCoreMutations } from './mutations.js';
import { Progress } from './progress.js';
import { committedIndex, hasQuorum, quorumSize, voteResult } from './quorum.js';
import { ReadIndexQueue, type ReadRequest } from './read-only.js';
import type {
  Entry,
  EntryType,
  HardState,
  Membership,
  MembershipChange,
  Message,
  MessageType,
  NodeId,
  ProposeResult,
  RaftRestoredState,
  RaftStatus,
  ReadState,
  Ready,
  Role,
  SnapshotMeta,
  SoftState,
} from './types.js';

export type { RaftCoreOptions, ReadOnlyMode } from './config.js';

/** What a handed-out Ready contained, so that advance() acknowledges exactly that. */
interface AcceptedReady {
  lastEntry?: LogPosition;
  snapshotIndex?: number;
  appliedIndex?: number;
}

const EMPTY = new Uint8Array(0);

export class RaftCore {
  readonly id: NodeId;
  private readonly options: NormalizedOptions;
  /** Deliberate bugs for mutation tests only (mutations.ts); none in any other use. */
  private readonly mutations: RaftCoreMutations;

  // Persistent state (Figure 2), mirrored to Ready.hardState.
  private term: number;
  private vote: NodeId | '';
  private readonly log: RaftLog;

  private role: Role = 'follower';
  private leaderId: NodeId | '' = '';
  private readonly configs: ConfigHistory;
  private stepRole: (m: Message) => void = (m) => this.stepFollower(m);
  private tickRole: () => void = () => this.tickElection();

  // Timers, in ticks.
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Ticks since construction: the leader's clock for its lease. */
  private clock = 0;

  // Candidate state.
  private readonly votes = new Map<NodeId, boolean>();

  // Leader state.
  private readonly progress = new Map<NodeId, Progress>();
  private leadTransferee: NodeId | '' = '';
  private readonly readIndexQueue = new ReadIndexQueue();
  private readsAwaitingNoop: { context: Uint8Array; from: NodeId }[] = [];
  /** Set once this leader started a transfer: a forced election may be under way, so no lease reads this term. */
  private leaseRevoked = false;
  /** Leader: bytes of the entries it appended in this term that are not committed yet (maxUncommittedBytes). */
  private uncommittedBytes = 0;
  /** Proposals appended since the last Ready: sent together (one append per follower) when the Ready is built. */
  private appendsDue = false;
  /**
   * lease_based only: a freshly started node does not know whether it heard from a leader before it
   * crashed, so it treats itself as inside a lease for one election timeout.
   */
  private startupEmbargo: boolean;

  // Output not yet handed out in a Ready.
  private outbox: Message[] = [];
  private outboxAfterPersist: Message[] = [];
  private readStates: ReadState[] = [];
  private prevSoftState: SoftState;
  private prevHardState: HardState;
  private accepted: AcceptedReady | undefined;

  constructor(config: RaftCoreOptions, restored: RaftRestoredState, mutations: RaftCoreMutations = NO_MUTATIONS) {
    this.options = normalizeOptions(config);
    this.mutations = mutations;
    this.id = config.id;
    const { hardState, snapshot, entries } = restored;
    this.log = new RaftLog(snapshot, entries, hardState.commit, restored.applied);
    this.configs = ConfigHistory.restore(snapshot, restored.initialMembership, entries);
    if (hardState.term < this.log.lastTerm()) {
      throw new Error(`raft: restored term ${hardState.term} is older than the last log entry's term ${this.log.lastTerm()}`);
    }
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.startupEmbargo = this.options.readOnlyMode === 'lease_based';
    this.becomeFollower(this.term, '');
    this.prevSoftState = { role: 'follower', leaderId: '' };
    this.prevHardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
  }

  // ───────────────────────────── public API ─────────────────────────────

  /** Advances logical time by one tick (elections, heartbeats, check-quorum). */
  tick(): void {
    this.clock++;
    this.tickRole();
  }

  /** Feeds one message received from a peer. Messages for another node or a stale term are handled per the paper. */
  step(m: Message): void {
    if (m.to !== this.id) return; // misrouted: not for this node
    if (m.from === this.id) throw new Error(`raft: node ${this.id} received a message from itself`);

    if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'pre_vote') {
        // Leader stickiness (thesis §4.2.3, §9.6): a server that heard from a leader within the
        // minimum election timeout does not help depose it — unless the leader itself asked for the
        // election (transfer).
        if (!isTransferContext(m.context) && this.inLease()) {
          if (m.type === 'pre_vote') {
            this.send(newMessage('pre_vote_response', this.id, m.from, this.term, { reject: true }));
            return;
          }
          if (this.options.checkQuorum) return; // ignore: no term bump, no answer
        }
      }
      if (m.type === 'pre_vote') {
        // §9.6: a pre-vote never changes the voter's term.
      } else if (m.type === 'pre_vote_response' && !m.reject) {
        // Pre-vote grants carry the term we would campaign in; ours moves only if we win.
      } else {
        this.becomeFollower(m.term, isLeaderMessage(m.type) ? m.from : '');
      }
    } else if (m.term < this.term) {
      if (m.type === 'append' || m.type === 'heartbeat') {
        // §5.1: reject the stale request with our term, so that the sender learns it and steps
        // down. etcd stays silent here unless pre-vote or check-quorum is on, relying on this node
        // to campaign and spread its term; a learner never campaigns, so it could stay stuck in a
        // later term (one it learned from a removed server's vote request) while the leader keeps
        // an earlier one.
        this.send(newMessage('append_response', this.id, m.from, this.term));
      } else if (m.type === 'pre_vote') {
        this.send(newMessage('pre_vote_response', this.id, m.from, this.term, { reject: true }));
      }
      return; // §5.1: stale term
    }

    if (m.type === 'vote' || m.type === 'pre_vote') {
      this.handleVoteRequest(m);
      return;
    }
    this.stepRole(m);
  }

  /** Appends a command if this node is the leader (and not transferring leadership). */
  propose(data: Uint8Array): ProposeResult {
    if (this.role !== 'leader') return { kind: 'not_leader', leaderId: this.leaderId };
    const refusal = this.proposalRefusal();
    if (refusal !== undefined) return { kind: 'dropped', reason: refusal };
    const limit = this.options.maxUncommittedBytes;
    if (limit > 0 && this.uncommittedBytes > 0 && this.uncommittedBytes + data.byteLength > limit) {
      return {
        kind: 'dropped',
        reason: `the leader holds ${this.uncommittedBytes} bytes of entries not committed yet, and ${data.byteLength} more would pass the limit of ${limit} (maxUncommittedBytes): the group is overloaded`,
      };
    }
    const entry = this.appendEntry('normal', data);
    return { kind: 'accepted', index: entry.index, term: entry.term };
  }

  /** Proposes a one-server membership change; rejected while another is pending or before the leader's no-op commits. */
  proposeMembershipChange(change: MembershipChange): ProposeResult {
    const refused = this.membershipChangeRefusal(change);
    if (refused !== undefined) return refused;
    const membership = applyMembershipChange(this.configs.current(), change);
    const entry = this.appendEntry('conf_change', encodeConfChange({ change, membership }));
    // The new configuration counts from now on; a smaller one may already hold a majority.
    if (this.maybeCommit()) this.onCommitAdvanced();
    return { kind: 'accepted', index: entry.index, term: entry.term };
  }

  /**
   * Why proposeMembershipChange(change) would be refused right now (not_leader or dropped), or
   * undefined if it would be accepted. Changes nothing: for a driver that must do something only
   * when the change will be proposed (write the new member's address first, say).
   */
  membershipChangeRefusal(change: MembershipChange): Exclude<ProposeResult, { kind: 'accepted' }> | undefined {
    if (this.role !== 'leader') return { kind: 'not_leader', leaderId: this.leaderId };
    const refusal = this.proposalRefusal();
    if (refusal !== undefined) return { kind: 'dropped', reason: refusal };
    if (!this.committedInCurrentTerm()) {
      return { kind: 'dropped', reason: "the leader's no-op entry of this term is not committed yet" };
    }
    if (this.configs.currentIndex() > this.log.committed) {
      return { kind: 'dropped', reason: `the membership change at index ${this.configs.currentIndex()} is not committed yet` };
    }
    const current = this.configs.current();
    const problem = membershipChangeProblem(current, change);
    if (problem !== undefined) return { kind: 'dropped', reason: problem };
    if (change.kind === 'promote') {
      // Thesis §4.2.1: a server joins the quorum only once it has caught up, or the cluster could
      // stall waiting for it. "Caught up" here: it holds everything committed so far.
      const match = this.progress.get(change.node)?.match ?? 0;
      if (match < this.log.committed) {
        return { kind: 'dropped', reason: `${change.node} has not caught up (match ${match} < commit ${this.log.committed})` };
      }
    }
    return undefined;
  }

  /** Requests a ReadIndex round (thesis §6.4); a ReadState with the same context appears in a later Ready. */
  readIndex(context: Uint8Array): { kind: 'accepted' } | { kind: 'not_leader'; leaderId: NodeId | '' } {
    if (context.length === 0) throw new Error('raft: a read index context must be non-empty (it identifies the request)');
    if (this.role === 'leader') {
      this.handleReadRequest(context, this.id);
      return { kind: 'accepted' };
    }
    if (this.role === 'follower' && this.leaderId !== '') {
      this.send(newMessage('read_index', this.id, this.leaderId, this.term, { context }));
      return { kind: 'accepted' };
    }
    return { kind: 'not_leader', leaderId: this.leaderId };
  }

  /** Starts leadership transfer to `to` (thesis §3.10): catch it up, then send timeout_now. */
  transferLeadership(to: NodeId): { kind: 'accepted' } | { kind: 'not_leader'; leaderId: NodeId | '' } | { kind: 'rejected'; reason: string } {
    if (this.role !== 'leader') return { kind: 'not_leader', leaderId: this.leaderId };
    if (to === this.id) return { kind: 'rejected', reason: `${to} is already the leader` };
    if (!isVoter(this.configs.current(), to)) return { kind: 'rejected', reason: `${to} is not a voter` };
    if (this.leadTransferee === to) return { kind: 'accepted' };
    const pr = this.progress.get(to);
    if (pr === undefined) throw new Error(`raft: voter ${to} has no progress on leader ${this.id}`);
    this.leadTransferee = to;
    this.leaseRevoked = true;
    // The transfer must finish within an election timeout, counted from now (tickHeartbeat aborts it).
    this.electionElapsed = 0;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
    return { kind: 'accepted' };
  }

  /** Campaigns now (tests, and a follower told timeout_now). */
  campaign(): void {
    this.hup(false);
  }

  hasReady(): boolean {
    if (this.accepted !== undefined) return false;
    return (
      this.appendsDue ||
      this.softStateChanged() ||
      this.hardStateChanged() ||
      this.log.pendingSnapshot() !== undefined ||
      this.log.hasUnstableEntries() ||
      this.log.hasNextCommittedEntries() ||
      this.outbox.length > 0 ||
      this.outboxAfterPersist.length > 0 ||
      this.readStates.length > 0
    );
  }

  /** What to persist, send and apply now. Call advance() once all of it is done. */
  ready(): Ready {
    if (this.accepted !== undefined) throw new Error('raft: ready() called again before advance()');
    this.flushAppends();
    this.refreshSnapshotMessages();
    const entries = this.log.unstableEntries();
    const snapshot = this.log.pendingSnapshot();
    const committedEntries = this.log.nextCommittedEntries();
    const rd: Ready = {
      entries,
      messages: this.outbox,
      messagesAfterPersist: this.outboxAfterPersist,
      committedEntries,
      readStates: this.readStates,
    };
    if (this.softStateChanged()) {
      rd.softState = this.softState();
      this.prevSoftState = rd.softState;
    }
    if (this.hardStateChanged()) {
      rd.hardState = this.hardState();
      this.prevHardState = rd.hardState;
    }
    if (snapshot !== undefined) rd.snapshot = snapshot;
    this.outbox = [];
    this.outboxAfterPersist = [];
    this.readStates = [];

    const accepted: AcceptedReady = {};
    const last = entries.at(-1);
    if (last !== undefined) accepted.lastEntry = { index: last.index, term: last.term };
    if (snapshot !== undefined) accepted.snapshotIndex = snapshot.index;
    const lastApplied = committedEntries.at(-1);
    if (lastApplied !== undefined) accepted.appliedIndex = lastApplied.index;
    this.accepted = accepted;
    return rd;
  }

  /** Acknowledges the last Ready: persisted, messages sent, committed entries applied. */
  advance(): void {
    const accepted = this.accepted;
    if (accepted === undefined) throw new Error('raft: advance() without a Ready');
    this.accepted = undefined;
    if (accepted.snapshotIndex !== undefined) {
      this.log.stableSnapshotTo(accepted.snapshotIndex);
      this.log.appliedTo(accepted.snapshotIndex);
    }
    if (accepted.lastEntry !== undefined) this.log.stableTo(accepted.lastEntry);
    if (accepted.appliedIndex !== undefined) this.log.appliedTo(accepted.appliedIndex);
    if (this.role === 'leader') {
      // Self acknowledgement after persist (etcd): the leader's own entries count toward a
      // majority only once they are durable here, exactly like a follower's acknowledgement.
      const self = this.progress.get(this.id);
      if (self !== undefined && self.maybeUpdate(this.log.persistedIndex()) && this.maybeCommit()) {
        this.onCommitAdvanced();
      }
    }
  }

  /** The state machine snapshotted everything up to `index` (≤ applied): entries up to it may be dropped. */
  compact(index: number): void {
    if (index > this.log.applied) {
      throw new Error(`raft: cannot compact to ${index}: only ${this.log.applied} is applied`);
    }
    // Already covered by the snapshot the log starts from (e.g. one received from the leader).
    if (index < this.log.firstIndex()) return;
    this.log.compact(this.snapshotMetaAt(index));
    this.configs.compactTo(index);
  }

  /**
   * The metadata to store with a state machine snapshot taken at `index` (firstIndex−1 ≤ index ≤
   * applied): term and membership as of that index. Restart and snapshot transfer rely on it.
   * Throws when the log no longer holds `index`, which a serial driver never sees: it handles
   * every Ready (including a snapshot received from the leader) before it snapshots again.
   */
  snapshotMetaAt(index: number): SnapshotMeta {
    if (index > this.log.applied) throw new Error(`raft: no snapshot at ${index}: only ${this.log.applied} is applied`);
    const term = this.log.term(index);
    if (term === undefined || this.log.pendingSnapshot() !== undefined) {
      throw new Error(`raft: no snapshot at ${index}: the log starts at ${this.log.firstIndex()} (handle the pending Ready first)`);
    }
    return { index, term, membership: cloneMembership(this.configs.at(index)) };
  }

  /** The driver's outcome of streaming a snapshot to `to`. */
  reportSnapshot(to: NodeId, succeeded: boolean): void {
    if (this.role !== 'leader') return;
    const pr = this.progress.get(to);
    if (pr === undefined || pr.state !== 'snapshot') return;
    // Either way, wait for the follower's answer (or the next heartbeat response) before probing:
    // on success its acknowledgement says where to continue; on failure we try again later.
    if (!succeeded) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    pr.probeSent = true;
  }

  /** The transport could not reach `to`: stop pipelining to it and probe again. */
  reportUnreachable(to: NodeId): void {
    if (this.role !== 'leader') return;
    const pr = this.progress.get(to);
    if (pr?.state === 'replicate') pr.becomeProbe();
  }

  /** The current membership (including changes appended but not yet applied). */
  membership(): Membership {
    return cloneMembership(this.configs.current());
  }

  /** The term this member leads, or undefined when it does not lead. */
  leadingTerm(): number | undefined {
    return this.role === 'leader' ? this.term : undefined;
  }

  /**
   * For a leader's driver between ready() and advance(): the entries that events fed meanwhile
   * (acknowledgements) committed beyond those of the Ready in hand, up to `durableUpTo` (the last
   * index stored before that Ready). The driver applies them now, in order; they count as applied
   * from here on, so the next Ready does not hand them out again. `applied` is what the driver has
   * applied: the Ready's own committed entries must be applied first (nothing is handed out
   * before). Empty unless this member leads with a Ready in hand.
   */
  applyCommittedSinceReady(applied: number, durableUpTo: number): Entry[] {
    const accepted = this.accepted;
    if (this.role !== 'leader' || accepted === undefined || this.log.pendingSnapshot() !== undefined) return [];
    const handedOut = Math.max(this.log.applied, accepted.appliedIndex ?? 0);
    if (applied !== handedOut) return [];
    const from = handedOut + 1;
    const to = Math.min(this.log.committed, durableUpTo);
    if (to < from || from < this.log.firstIndex()) return [];
    const entries = this.log.slice(from, to + 1);
    const last = entries.at(-1);
    if (last !== undefined) this.log.appliedTo(last.index);
    return entries;
  }

  status(): RaftStatus {
    const status: RaftStatus = {
      id: this.id,
      role: this.role,
      leaderId: this.leaderId,
      term: this.term,
      vote: this.vote,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      firstIndex: this.log.firstIndex(),
      membership: this.membership(),
    };
    if (this.role === 'leader') {
      const progress: NonNullable<RaftStatus['progress']> = {};
      for (const [id, pr] of this.progress) progress[id] = { match: pr.match, next: pr.next, state: pr.state };
      status.progress = progress;
      status.leadTransferee = this.leadTransferee;
    }
    return status;
  }

  // ───────────────────────────── roles ─────────────────────────────

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = '';
    }
    this.leaderId = '';
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.leadTransferee = '';
    this.votes.clear();
    this.progress.clear();
    this.readIndexQueue.clear();
    this.readsAwaitingNoop = [];
    this.appendsDue = false;
    this.leaseRevoked = false;
  }

  /** §5.2: election timeouts are drawn uniformly from [electionTicks, 2·electionTicks). */
  private resetRandomizedElectionTimeout(): void {
    const r = this.options.random();
    if (!(r >= 0 && r < 1)) throw new Error(`raft: config.random() must return a number in [0, 1), got ${r}`);
    this.randomizedElectionTimeout = this.options.electionTicks + Math.floor(r * this.options.electionTicks);
  }

  private becomeFollower(term: number, leaderId: NodeId | ''): void {
    this.stepRole = (m) => this.stepFollower(m);
    this.tickRole = () => this.tickElection();
    this.reset(term);
    this.leaderId = leaderId;
    this.role = 'follower';
  }

  private becomePreCandidate(): void {
    if (this.role === 'leader') throw new Error('raft: a leader cannot become a pre-candidate');
    // Thesis §9.6: no term bump, no vote cast — a pre-candidate that cannot win disturbs nobody.
    this.stepRole = (m) => this.stepCandidate(m);
    this.tickRole = () => this.tickElection();
    this.votes.clear();
    this.leaderId = '';
    this.role = 'pre_candidate';
    this.startupEmbargo = false;
  }

  private becomeCandidate(): void {
    if (this.role === 'leader') throw new Error('raft: a leader cannot become a candidate');
    this.stepRole = (m) => this.stepCandidate(m);
    this.tickRole = () => this.tickElection();
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this.startupEmbargo = false;
  }

  private becomeLeader(): void {
    if (this.role === 'follower') throw new Error('raft: a follower cannot become leader without an election');
    this.stepRole = (m) => this.stepLeader(m);
    this.tickRole = () => this.tickHeartbeat();
    this.reset(this.term);
    this.uncommittedBytes = 0;
    this.leaderId = this.id;
    this.role = 'leader';
    const membership = this.configs.current();
    for (const id of [...membership.voters, ...membership.learners]) {
      this.progress.set(id, this.newProgress(id, this.log.lastIndex() + 1, membership.learners.includes(id)));
    }
    const self = this.progress.get(this.id);
    if (self === undefined) throw new Error(`raft: leader ${this.id} is not in its own configuration`);
    // Only what is durable here counts toward a majority (see advance()).
    self.match = this.log.persistedIndex();
    self.becomeReplicate();
    self.recentActive = true;
    // §5.4.2 / §8: entries of earlier terms commit only indirectly, by committing one of the
    // current term — so append one right away rather than wait for a client.
    // Reads and membership changes wait until it commits (committedInCurrentTerm()).
    this.appendEntry('noop', EMPTY);
  }

  private newProgress(id: NodeId, next: number, isLearner: boolean): Progress {
    const pr = new Progress(id, next, this.options.maxInflightAppends, isLearner);
    // A new peer gets a full check-quorum round before it is held against the leader.
    pr.recentActive = true;
    return pr;
  }

  /** Only voters of the current configuration campaign; a removed node stays quiet (thesis §4.2.3). */
  private promotable(): boolean {
    return isVoter(this.configs.current(), this.id) && this.log.pendingSnapshot() === undefined;
  }

  // ───────────────────────────── ticks ─────────────────────────────

  private tickElection(): void {
    this.electionElapsed++;
    if (this.electionElapsed >= this.options.electionTicks) this.startupEmbargo = false;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.options.electionTicks) {
      this.electionElapsed = 0;
      if (this.options.checkQuorum && !this.quorumRecentlyActive()) {
        // Thesis §6.2: a leader cut off from a majority steps down, so that clients retry elsewhere
        // and it stops serving stale reads.
        this.becomeFollower(this.term, '');
        return;
      }
      if (this.leadTransferee !== '') this.leadTransferee = ''; // §3.10: abort after an election timeout
    }
    if (this.heartbeatElapsed >= this.options.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat(this.readIndexQueue.lastContext());
    }
  }

  /** Whether a majority of voters was heard from since the last round; starts a new round. */
  private quorumRecentlyActive(): boolean {
    const active = hasQuorum(this.configs.current().voters, (id) => id === this.id || this.progress.get(id)?.recentActive === true);
    for (const [id, pr] of this.progress) if (id !== this.id) pr.recentActive = false;
    return active;
  }

  /** Within the minimum election timeout of hearing from a leader (or, lease_based, of starting). */
  private inLease(): boolean {
    return (this.leaderId !== '' || this.startupEmbargo) && this.electionElapsed < this.options.electionTicks;
  }

  // ───────────────────────────── elections ─────────────────────────────

  private hup(transfer: boolean): void {
    if (this.role === 'leader' || !this.promotable()) return;
    if (this.options.preVote && !transfer) this.campaignPreVote();
    else this.campaignElection(transfer);
  }

  private campaignPreVote(): void {
    this.becomePreCandidate();
    // Ask with the term we would campaign in, without adopting it.
    this.requestVotes('pre_vote', this.term + 1, undefined);
    this.poll(this.id, true);
  }

  private campaignElection(transfer: boolean): void {
    this.becomeCandidate();
    this.requestVotes('vote', this.term, transfer ? TRANSFER_CONTEXT : undefined);
    this.poll(this.id, true);
  }

  private requestVotes(type: 'vote' | 'pre_vote', term: number, context: Uint8Array | undefined): void {
    const fields: MessageFields = { logTerm: this.log.lastTerm(), index: this.log.lastIndex() };
    if (context !== undefined) fields.context = context;
    for (const voter of this.configs.current().voters) {
      if (voter !== this.id) this.send(newMessage(type, this.id, voter, term, fields));
    }
  }

  private handleVoteRequest(m: Message): void {
    const responseType: MessageType = m.type === 'vote' ? 'vote_response' : 'pre_vote_response';
    // §5.2: at most one vote per term, first come first served (a repeated request from the same
    // candidate is granted again). A follower that knows the leader of this term votes for nobody.
    // A pre-vote for a later term promises nothing, so it only needs the log check.
    const canVote =
      this.vote === m.from || (this.vote === '' && this.leaderId === '') || (m.type === 'pre_vote' && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.logTerm, m.index)) {
      // The grant carries the candidate's term (for a pre-vote, the term it would campaign in).
      this.send(newMessage(responseType, this.id, m.from, m.term));
      if (m.type === 'vote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send(newMessage(responseType, this.id, m.from, this.term, { reject: true }));
    }
  }

  /** Records a (pre-)vote; only voters of the current configuration count. */
  private poll(from: NodeId, granted: boolean): void {
    const voters = this.configs.current().voters;
    if (!voters.includes(from)) return;
    if (!this.votes.has(from)) this.votes.set(from, granted);
    switch (voteResult(voters, this.votes)) {
      case 'won':
        if (this.role === 'pre_candidate') this.campaignElection(false);
        else this.becomeLeader();
        break;
      case 'lost':
        // A candidate that cannot win waits for a leader or its next timeout as a follower.
        this.becomeFollower(this.term, '');
        break;
      case 'pending':
        break;
    }
  }

  // ───────────────────────────── step functions ─────────────────────────────

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'append':
        this.electionElapsed = 0;
        this.leaderId = m.from;
        this.handleAppend(m);
        break;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.leaderId = m.from;
        this.handleHeartbeat(m);
        break;
      case 'snapshot':
        this.electionElapsed = 0;
        this.leaderId = m.from;
        this.handleSnapshot(m);
        break;
      case 'timeout_now':
        // Thesis §3.10: the leader caught us up and wants us to take over now, skipping pre-vote.
        this.hup(true);
        break;
      case 'read_index_response':
        this.readStates.push({ index: m.index, context: m.context ?? EMPTY });
        break;
      default:
        // Responses to a role we no longer have, and read_index sent to a former leader: the
        // requester retries when it gets no answer.
        break;
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        // §5.2: a leader of our term exists; recognize it.
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        break;
      case 'vote_response':
        if (this.role === 'candidate') this.poll(m.from, !m.reject);
        break;
      case 'pre_vote_response':
        if (this.role === 'pre_candidate') this.poll(m.from, !m.reject);
        break;
      default:
        break;
    }
  }

  private stepLeader(m: Message): void {
    if (m.type === 'read_index') {
      this.handleReadRequest(m.context ?? EMPTY, m.from);
      return;
    }
    if (isLeaderMessage(m.type)) {
      throw new Error(`raft: election safety violated: ${this.id} and ${m.from} both lead term ${this.term}`);
    }
    const pr = this.progress.get(m.from);
    if (pr === undefined) return; // no longer a member
    switch (m.type) {
      case 'append_response':
        pr.recentActive = true;
        this.handleAppendResponse(m, pr);
        break;
      case 'snapshot_response':
        pr.recentActive = true;
        this.handleAppendResponse({ ...m, reject: false }, pr);
        break;
      case 'heartbeat_response':
        pr.recentActive = true;
        this.handleHeartbeatResponse(m, pr);
        break;
      default:
        break;
    }
  }

  // ───────────────────────────── follower side of replication ─────────────────────────────

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      // Everything up to our commit index is settled; tell the leader to continue from there.
      this.send(newMessage('append_response', this.id, m.from, this.term, { index: this.log.committed }));
      return;
    }
    const outcome = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (outcome !== undefined) {
      if (outcome.rewrittenFrom !== undefined) {
        const from = outcome.rewrittenFrom;
        this.configs.truncateFrom(from);
        for (const entry of m.entries) if (entry.index >= from) this.configs.observe(entry);
      }
      this.send(newMessage('append_response', this.id, m.from, this.term, { index: outcome.lastNewIndex }));
      return;
    }
    // §5.3 consistency check failed. Hint where our log may match, skipping whole terms: the
    // largest index ≤ the probe whose term is ≤ the leader's term there. The leader does the same
    // search on its side with our term, so each round trip skips at least one divergent term.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send(
      newMessage('append_response', this.id, m.from, this.term, {
        index: m.index,
        reject: true,
        rejectHint: hint.index,
        logTerm: hint.term,
      }),
    );
  }

  private handleHeartbeat(m: Message): void {
    // The leader caps heartbeat.commit at what we are known to match, so we hold those entries.
    this.log.commitTo(m.commit);
    const fields: MessageFields = { index: m.index };
    if (m.context !== undefined) fields.context = m.context;
    this.send(newMessage('heartbeat_response', this.id, m.from, this.term, fields));
  }

  private handleSnapshot(m: Message): void {
    const snapshot = m.snapshot;
    if (snapshot === undefined) throw new Error(`raft: snapshot message from ${m.from} carries no snapshot metadata`);
    const ack = (index: number): void => this.send(newMessage('snapshot_response', this.id, m.from, this.term, { index }));
    if (snapshot.index <= this.log.committed) {
      ack(this.log.committed); // stale: we already have all of it
      return;
    }
    // The snapshot's membership may predate this node's own addition (a learner added after the
    // leader's last compaction): it is installed all the same, and the conf_change entries that
    // follow the snapshot bring the configuration up to date (they carry the full membership).
    // Refusing it would leave the leader re-sending the same snapshot forever.
    if (this.log.matchTerm(snapshot.index, snapshot.term)) {
      // We hold the snapshot's last entry, hence (log matching) everything before it: fast-forward.
      this.log.commitTo(snapshot.index);
      ack(snapshot.index);
      return;
    }
    // §7: discard the whole log; it restarts right after the snapshot.
    this.log.restore(snapshot);
    this.configs.reset(snapshot.index, snapshot.membership);
    ack(snapshot.index);
  }

  // ───────────────────────────── leader side of replication ─────────────────────────────

  private proposalRefusal(): string | undefined {
    if (this.leadTransferee !== '') return `leadership transfer to ${this.leadTransferee} in progress`;
    if (!isVoter(this.configs.current(), this.id)) return 'this leader is being removed from the group';
    return undefined;
  }

  private appendEntry(type: EntryType, data: Uint8Array): Entry {
    const entry: Entry = { term: this.term, index: this.log.lastIndex() + 1, type, data };
    this.log.append([entry]);
    this.uncommittedBytes += data.byteLength;
    if (this.configs.observe(entry)) this.syncProgressWithConfig();
    this.appendsDue = true;
    return entry;
  }

  /** Adds progress for new members, drops it for removed ones, updates learner flags. */
  private syncProgressWithConfig(): void {
    const membership = this.configs.current();
    const members = new Set([...membership.voters, ...membership.learners]);
    for (const id of [...this.progress.keys()]) {
      if (!members.has(id)) {
        this.progress.delete(id);
        if (this.leadTransferee === id) this.leadTransferee = '';
      }
    }
    for (const id of members) {
      const isLearner = membership.learners.includes(id);
      const pr = this.progress.get(id);
      if (pr === undefined) {
        // Probe from the end of the log; the follower's rejection hint walks it back.
        this.progress.set(id, this.newProgress(id, Math.max(this.log.lastIndex(), 1), isLearner));
      } else {
        pr.isLearner = isLearner;
      }
    }
  }

  /** Sends appends for proposals made since the last Ready: one batch per follower. */
  private flushAppends(): void {
    if (!this.appendsDue) return;
    this.appendsDue = false;
    if (this.role === 'leader') this.bcastAppend(false);
  }

  private bcastAppend(sendIfEmpty: boolean): void {
    for (const id of this.progress.keys()) {
      if (id === this.id) continue;
      this.sendAppend(id, sendIfEmpty);
      // Replicate state: fill the flow-control window with full batches.
      while (this.sendAppend(id, false)) {
        /* keep sending while the window allows */
      }
    }
  }

  /**
   * Sends the follower its next batch, or a snapshot if the entries it needs are compacted. Returns
   * whether a message went out. Paused followers get nothing (probe: one at a time; replicate: the
   * inflight window is full; snapshot: waiting for it).
   */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (pr === undefined || to === this.id || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const lastIndex = this.log.lastIndex();
    if (prevIndex > lastIndex) throw new Error(`raft: next index ${pr.next} for ${to} is beyond the log (${lastIndex})`);
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) return this.sendSnapshot(to, pr);
    const entries = this.log.slice(pr.next, lastIndex + 1, this.options.maxAppendEntries, this.options.maxAppendBytes);
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send(
      newMessage('append', this.id, to, this.term, { index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed }),
    );
    pr.sentEntries(entries.length, entries.at(-1)?.index ?? prevIndex);
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    const snapshot = this.log.snapshotMeta();
    if (snapshot === undefined) throw new Error(`raft: ${to} needs compacted entries but there is no snapshot`);
    pr.becomeSnapshot(snapshot.index);
    this.send(newMessage('snapshot', this.id, to, this.term, { index: snapshot.index, logTerm: snapshot.term, snapshot }));
    return true;
  }

  /**
   * A snapshot message names the latest snapshot as of ready(). If the driver compacted again after
   * the message was queued, the older snapshot's data may be gone; the newer one covers everything
   * the follower needed, so send that instead (the driver streams its latest snapshot, and compacts
   * only after it sent the Ready's messages).
   */
  private refreshSnapshotMessages(): void {
    const latest = this.log.snapshotMeta();
    if (latest === undefined) return;
    for (const m of this.outbox) {
      if (m.type !== 'snapshot' || m.snapshot === undefined || m.snapshot.index >= latest.index) continue;
      m.snapshot = latest;
      m.index = latest.index;
      m.logTerm = latest.term;
      const pr = this.role === 'leader' ? this.progress.get(m.to) : undefined;
      if (pr?.state === 'snapshot') pr.pendingSnapshot = latest.index;
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(newMessage('timeout_now', this.id, to, this.term));
  }

  private bcastHeartbeat(context: Uint8Array | undefined): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      // Never tell a follower to commit beyond what it is known to hold (it might not have it).
      // heartbeat.index carries the leader's clock, echoed back: the lease counts from the send time.
      const fields: MessageFields = { commit: Math.min(pr.match, this.log.committed), index: this.clock };
      if (context !== undefined) fields.context = context;
      this.send(newMessage('heartbeat', this.id, id, this.term, fields));
    }
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    if (m.reject) {
      // Fast backtracking: if the follower told us its term at the hint, skip every entry of ours
      // with a larger term in one step.
      let nextProbe = m.rejectHint;
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, nextProbe)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index) && !(pr.match === m.index && pr.state === 'probe')) return;
    switch (pr.state) {
      case 'probe':
        pr.becomeReplicate();
        break;
      case 'snapshot':
        if (pr.match + 1 >= this.log.firstIndex()) {
          pr.becomeProbe();
          pr.becomeReplicate();
        }
        break;
      case 'replicate':
        pr.inflights.freeLE(m.index);
        break;
    }
    if (this.maybeCommit()) {
      this.onCommitAdvanced();
    } else if (wasPaused) {
      // It may have missed commit index updates while paused.
      this.sendAppend(m.from, true);
    }
    if (this.role !== 'leader') return; // stepped down after committing its own removal
    while (this.sendAppend(m.from, false)) {
      /* refill the window */
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    pr.probeSent = false;
    // m.index echoes the heartbeat's send time (bcastHeartbeat). The lease counts from then, not
    // from now: the acknowledgement may have been held back for any time after the follower
    // started ignoring candidates (thesis §6.4.1).
    const leaseStart = this.mutations.leaseCountsFromAckArrival === true ? this.clock : m.index;
    if (!pr.isLearner) pr.ackedHeartbeatTick = Math.max(pr.ackedHeartbeatTick, leaseStart);
    // A full window with no acknowledgements may mean appends were lost: free one slot so that
    // the next append (which the follower rejects if it has a gap) gets through and repairs it.
    if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex() || pr.state === 'probe') this.sendAppend(m.from, true);

    if (m.context === undefined || m.context.length === 0 || pr.isLearner) return;
    const acks = this.readIndexQueue.recvAck(m.from, m.context);
    if (acks === undefined) return;
    if (hasQuorum(this.configs.current().voters, (id) => id === this.id || acks.has(id))) {
      for (const request of this.readIndexQueue.releaseThrough(m.context)) this.respondToRead(request);
    }
  }

  /** §5.3/§5.4.2: commit the highest index a majority holds, if it is of the current term. */
  private maybeCommit(): boolean {
    const index = committedIndex(this.configs.current().voters, (id) => this.progress.get(id)?.match ?? 0);
    if (index <= this.log.committed) return false;
    if (this.log.term(index) !== this.term && this.mutations.commitEarlierTermByCounting !== true) return false;
    const previous = this.log.committed;
    this.log.commitTo(index);
    // Entries of this term that just committed no longer count against maxUncommittedBytes.
    let committedBytes = 0;
    for (let i = previous + 1; i <= index; i++) {
      const entry = this.log.entry(i);
      if (entry !== undefined && entry.term === this.term) committedBytes += entry.data.byteLength;
    }
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - committedBytes);
    return true;
  }

  private onCommitAdvanced(): void {
    // Followers learn the new commit index right away, or with their next append or heartbeat
    // (RaftCoreOptions.piggybackCommit).
    this.bcastAppend(!this.options.piggybackCommit);
    if (this.committedInCurrentTerm() && this.readsAwaitingNoop.length > 0) {
      const waiting = this.readsAwaitingNoop;
      this.readsAwaitingNoop = [];
      for (const { context, from } of waiting) this.startRead(context, from);
    }
    // Thesis §4.2.2: a leader that removed itself steps down once the removal is committed.
    if (!isVoter(this.configs.current(), this.id) && this.configs.currentIndex() <= this.log.committed) {
      this.becomeFollower(this.term, '');
    }
  }

  private committedInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  // ───────────────────────────── reads ─────────────────────────────

  private handleReadRequest(context: Uint8Array, from: NodeId): void {
    if (context.length === 0) return;
    // Thesis §6.4 step 1: until an entry of its term is committed, a new leader does not know the
    // latest commit index; answering now could miss writes committed by its predecessor.
    if (!this.committedInCurrentTerm()) {
      this.readsAwaitingNoop.push({ context, from });
      return;
    }
    this.startRead(context, from);
  }

  private startRead(context: Uint8Array, from: NodeId): void {
    const index = this.log.committed;
    const voters = this.configs.current().voters;
    if (voters.length === 1 && voters[0] === this.id) {
      this.respondToRead({ index, context, from, acks: new Set() });
      return;
    }
    if (this.options.readOnlyMode === 'lease_based' && this.leaseValid()) {
      this.respondToRead({ index, context, from, acks: new Set() });
      return;
    }
    if (!this.readIndexQueue.add(index, context, from)) return; // same context already pending
    this.bcastHeartbeat(context);
  }

  /**
   * Thesis §6.4.1. The lease starts at the send time (leader clock) of the newest heartbeat that a
   * majority of voters acknowledged, and lasts electionTicks − leaseSafetyMarginTicks; see
   * RaftCoreOptions.leaseSafetyMarginTicks for the clock-drift bound. A transfer voids it for the
   * term: timeout_now makes voters ignore stickiness.
   */
  private leaseValid(): boolean {
    if (!this.options.checkQuorum || this.leaseRevoked || this.leadTransferee !== '') return false;
    const voters = this.configs.current().voters;
    const sendTicks = voters
      .map((id) => (id === this.id ? this.clock : (this.progress.get(id)?.ackedHeartbeatTick ?? -1)))
      .sort((a, b) => b - a);
    const start = sendTicks[quorumSize(voters.length) - 1] ?? -1;
    if (start < 0) return false;
    const margin = this.mutations.leaseIgnoresClockDrift === true ? 1 : this.options.leaseSafetyMarginTicks;
    return this.clock - start < this.options.electionTicks - margin;
  }

  private respondToRead(request: ReadRequest): void {
    if (request.from === this.id) {
      this.readStates.push({ index: request.index, context: request.context });
    } else {
      this.send(newMessage('read_index_response', this.id, request.from, this.term, { index: request.index, context: request.context }));
    }
  }

  // ───────────────────────────── output ─────────────────────────────

  private send(m: Message): void {
    if (mustWaitForPersist(m.type)) this.outboxAfterPersist.push(m);
    else this.outbox.push(m);
  }

  private softState(): SoftState {
    return { role: this.role, leaderId: this.leaderId };
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private softStateChanged(): boolean {
    return this.prevSoftState.role !== this.role || this.prevSoftState.leaderId !== this.leaderId;
  }

  private hardStateChanged(): boolean {
    const prev = this.prevHardState;
    return prev.term !== this.term || prev.vote !== this.vote || prev.commit !== this.log.committed;
  }
}
