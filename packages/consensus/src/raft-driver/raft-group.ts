// The `raft` engine: the driver that turns the pure Raft core (../raft/core.ts) into a
// ConsensusGroup. The core decides; this file does the I/O around it — ticks, the transport, the
// write-ahead log, the state machine — in the order CONVENTIONS §1 fixes:
//
//     persist → send → apply → advance
//
// ONE SERIAL EVENT LOOP. Ticks, peer messages, proposals, read barriers, membership changes and
// snapshots are queued as events; the loop takes everything queued, feeds it to the core one event
// at a time (synchronous calls, nothing awaited in between), then drains the core's Ready: persist
// (one WAL append), send, apply committed entries, resolve waiters, advance. Only then does it look
// at the queue again, so nothing ever changes the core while a Ready is being persisted — the
// mistake of async handlers that await storage mid-transition (CONVENTIONS §5). Feeding everything
// that queued up during one fsync into the next Ready is what batches proposals into one append.
//
// SENDING BEFORE PERSISTING. Ready.messages leave before the Ready's entries are durable; only
// Ready.messagesAfterPersist (vote requests and grants, append and snapshot acknowledgements) wait
// for the fsync. Sending everything after the fsync would be simpler and also correct; the core
// puts a message in `messages` only when sending it early is safe, and a leader's appends then
// reach its followers while it writes the same entries itself (Raft thesis §10.2.1), which takes
// one fsync off the commit latency. It relies on each Ready being persisted before the next is
// taken, so no message ever leaves ahead of state from an earlier Ready.
//
// APPLYING BEFORE PERSISTING. Committed entries that were durable here before the Ready (every
// committed entry, on a leader) are applied and answered before the Ready's write, not after it,
// so an answer never waits for a later batch's fsync. Only entries the Ready itself writes wait.
// And a Ready that only moves the commit index writes its hard state without an fsync (etcd's
// MustSync): see RaftStorage.persist.
//
// MEMBERSHIP comes from the log and the snapshot, never from configuration or discovery. The
// `peers` option is read exactly once, to bootstrap an empty data folder, and recorded in the WAL;
// a restarted member never consults it again for membership (CONVENTIONS §1, §5).

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import { createLogger, processMetrics, tracer, type Logger, type Metrics } from '@concord/runtime';
import { RaftCore, type ReadOnlyMode } from '../raft/core.js';
import { decodeConfChange } from '../raft/membership.js';
import type {
  Entry,
  Membership,
  MembershipChange as CoreMembershipChange,
  Message,
  NodeId,
  RaftConfig,
  RaftRestoredState,
  ReadState,
  Ready,
  SnapshotMeta,
  SoftState,
} from '../raft/types.js';
import type {
  ConsensusGroup,
  ConsensusStatus,
  LeaderHint,
  MemberInfo,
  MemberRole,
  MembershipChange,
  MembershipOutcome,
  ProposeOutcome,
  ReadBarrierOutcome,
  StateMachine,
  TransferOutcome,
} from '../types.js';
import { decodeNormalEntry, encodeCommandEntry, encodeMemberAddressEntry } from './entry-envelope.js';
import { snapshotMessage } from './message-codec.js';
import { RaftStorage } from './raft-storage.js';
import { RaftMemberMetrics, type ProposalOutcomeLabel, type TransferTrigger } from './raft-metrics.js';
import { cryptoSeededRandom } from './random.js';
import { decodeSnapshotPayload, type SnapshotPayload } from './storage-codec.js';
import type { RaftInbound, RaftTransport, ReceivedSnapshot } from './transport.js';

/**
 * Timing defaults. A tick is 50 ms; a follower that hears nothing for 10–20 ticks (0.5–1 s, the
 * core randomizes in [electionTicks, 2·electionTicks)) campaigns. After a leader dies the first
 * follower to time out needs at most 1 s plus a pre-vote and a vote round trip — well inside the
 * 2 s a new leader must take — while 10 heartbeats (one per tick) fit in the shortest timeout, so
 * a few lost or late heartbeats do not cause an election.
 */
export const RAFT_DEFAULTS = {
  tickMs: 50,
  electionTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  /** One append carries at most this many entries / bytes (well under the 8 MiB gRPC limit). */
  maxAppendEntries: 512,
  maxAppendBytes: 1024 * 1024,
  /** Appends in flight to one follower before waiting for acknowledgements. */
  maxInflightAppends: 64,
  /** Followers learn of commits with their next append or heartbeat (RaftCoreOptions.piggybackCommit). */
  piggybackCommit: true,
  /** Snapshot and compact the log after this many applied entries (but see snapshotLogRatio). */
  snapshotEvery: 10_000,
  /**
   * A snapshot rewrites the whole state, so with a large state a fixed entry count makes the cost
   * of a write grow with the data (a 300 MB state snapshotted every 10,000 small writes rewrites
   * 100 bytes per byte written). Once the last snapshot holds at least snapshotRatioMinBytes, an
   * automatic snapshot also waits until the entries applied since it add up to this fraction of its
   * size: snapshot bytes written per log byte stay at or below 1 / snapshotLogRatio, and the log
   * kept in memory below this fraction of the state. Redis rewrites its append-only file on the same
   * principle (auto-aof-rewrite-percentage, auto-aof-rewrite-min-size).
   */
  snapshotLogRatio: 0.5,
  snapshotRatioMinBytes: 4 * 1024 * 1024,
  /**
   * A proposal not applied within this time resolves `unknown` (its entry may still commit),
   * e.g. when this member lost leadership and is cut off from the new leader.
   */
  proposalTimeoutMs: 10_000,
  /** A read barrier with no answer from a leader within this time resolves `not_leader`. */
  readTimeoutMs: 5_000,
  /** Inbound peer messages queued beyond this are dropped (Raft retransmits): a slow disk must not exhaust memory. */
  maxQueuedMessages: 10_000,
  /** Read barriers confirm leadership with a heartbeat round (thesis §6.4), correct whatever the clocks do. */
  readOnlyMode: 'safe',
} as const;

export interface RaftGroupOptions<Result> {
  /** The group's name; peers route messages by it (a process may host several groups). */
  groupId: string;
  memberId: NodeId;
  /** host:port this member's peer service listens on, reported as the leader address. */
  address: string;
  /**
   * The group's initial members (id → host:port), identical on every founding member. Read only
   * when the data folder is empty, to bootstrap it; afterwards membership comes from the log and
   * snapshots. A member that is not in `peers` starts with an empty membership: it never
   * campaigns, and joins once the leader adds it (changeMembership add_learner) and replicates to
   * it — the first conf_change entry or snapshot it receives carries the whole membership.
   */
  peers: Readonly<Record<NodeId, string>> | ReadonlyMap<NodeId, string>;
  /** Folder for this member's Raft data (kept under `raft/` in it: `wal/` and `snapshot.bin`). */
  dataDir: string;
  stateMachine: StateMachine<Result>;
  transport: RaftTransport;
  /** See RAFT_DEFAULTS for these and why. */
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  maxAppendEntries?: number;
  maxAppendBytes?: number;
  maxInflightAppends?: number;
  /** See RaftCoreOptions.maxUncommittedBytes (default 64 MiB). */
  maxUncommittedBytes?: number;
  /** See RaftCoreOptions.piggybackCommit (default RAFT_DEFAULTS.piggybackCommit). */
  piggybackCommit?: boolean;
  snapshotEvery?: number;
  snapshotLogRatio?: number;
  snapshotRatioMinBytes?: number;
  proposalTimeoutMs?: number;
  readTimeoutMs?: number;
  maxQueuedMessages?: number;
  /** 'safe' (default) or 'lease_based' (no heartbeat round while the leader's lease holds; needs bounded clock drift, see the core's config.ts). */
  readOnlyMode?: ReadOnlyMode;
  /** Election jitter source in [0, 1); default a PRNG seeded from the OS. Tests inject a seeded one. */
  random?: () => number;
  logger?: Logger;
  /** fsync every append (default true). Off only in tests and benchmarks. */
  sync?: boolean;
  /** WAL segment size in bytes (default: the storage package's). */
  segmentBytes?: number;
  /** Where the concord_raft_* metrics go (labels group, member); default the process's registry. */
  metrics?: Metrics;
}

interface Resolved<Result> {
  resolve(outcome: Result): void;
}

type GroupEvent =
  | { kind: 'message'; message: Message; senderAddress: string | undefined }
  | { kind: 'propose'; data: Uint8Array; waiter: Resolved<ProposeOutcome<unknown>>; span: Span }
  | { kind: 'read'; waiter: Resolved<ReadBarrierOutcome> }
  | { kind: 'membership'; change: MembershipChange; waiter: Resolved<MembershipOutcome> }
  | { kind: 'transfer'; memberId: NodeId; waiter: Resolved<TransferOutcome> }
  | { kind: 'snapshot_received'; snapshot: ReceivedSnapshot; resolve(value: { term: number }): void; reject(error: unknown): void }
  | { kind: 'snapshot_sent'; to: NodeId; succeeded: boolean }
  | { kind: 'unreachable'; peer: NodeId }
  | { kind: 'snapshot_now'; resolve(): void; reject(error: unknown): void }
  | { kind: 'snapshot_saved'; meta: SnapshotMeta; waiters: { resolve(): void; reject(error: unknown): void }[] };

/** A leadership transfer this member started as leader, answered once `to` leads or it failed. */
interface PendingTransfer {
  to: NodeId;
  /** performance.now() after which it fails even if no leader emerged (three election timeouts). */
  deadline: number;
  resolve(outcome: TransferOutcome): void;
}

interface PendingProposal<Result> {
  term: number;
  resolve(outcome: ProposeOutcome<Result>): void;
  /** performance.now() after which it resolves `unknown` (proposalTimeoutMs after it was made). */
  deadline: number;
}

/**
 * The "raft.election" span of the election this member is running: from the Ready in which it
 * became pre-candidate or candidate to the one in which it became leader or follower again.
 */
interface ElectionTrace {
  span: Span;
  phase: 'pre_vote' | 'vote';
  term: number;
  /** Readys that carried (pre-)vote requests: one per campaign round. */
  rounds: number;
  /** The latest answer of each voter to this round's requests. */
  answers: Map<NodeId, boolean>;
}

interface PendingMembershipChange {
  term: number;
  change: CoreMembershipChange;
  resolve(outcome: MembershipOutcome): void;
}

/** One readBarrier() caller; `settled` once answered (by its round, its timeout or a stop). */
interface ReadWaiter {
  resolve(outcome: ReadBarrierOutcome): void;
  /** performance.now() after which it is answered not_leader (readTimeoutMs after it arrived). */
  deadline: number;
  settled: boolean;
}

/** One ReadIndex round: a single core.readIndex request that answers every caller in it. */
interface PendingRead {
  /** Set once the core's ReadState for this request arrives. */
  index?: number;
  waiters: ReadWaiter[];
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const chosen = value ?? fallback;
  if (!Number.isSafeInteger(chosen) || chosen < 1) throw new RangeError(`${name}: must be a positive integer (got ${String(value)})`);
  return chosen;
}

/** Whether `membership` reflects `change` (used when a snapshot overtook the change's entry). */
function changeInEffect(membership: Membership, change: CoreMembershipChange): boolean {
  switch (change.kind) {
    case 'add_learner':
      return membership.learners.includes(change.node) || membership.voters.includes(change.node);
    case 'promote':
      return membership.voters.includes(change.node);
    case 'remove':
      return !membership.voters.includes(change.node) && !membership.learners.includes(change.node);
  }
}

export class RaftGroup<Result> implements ConsensusGroup<Result> {
  readonly engine = 'raft' as const;
  private readonly logger: Logger;
  private readonly config: Omit<RaftConfig, 'id' | 'random'> & { readOnlyMode: ReadOnlyMode; maxUncommittedBytes?: number; piggybackCommit: boolean };
  private readonly tickMs: number;
  private readonly snapshotEvery: number;
  private readonly snapshotLogRatio: number;
  private readonly snapshotRatioMinBytes: number;
  /** Size of the state in the last snapshot written, installed or recovered. */
  private lastSnapshotBytes = 0;
  /** Bytes of the entries applied after the state the last snapshot captured. */
  private appliedBytesSinceSnapshot = 0;
  private readonly proposalTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly maxQueuedMessages: number;

  private core: RaftCore | undefined;
  private storage: RaftStorage | undefined;
  private ticker: NodeJS.Timeout | undefined;

  private readonly queue: GroupEvent[] = [];
  private queuedMessages = 0;
  private pendingTicks = 0;
  /** The loop's current run, while one is running. */
  private running: Promise<void> | undefined;

  private applied = 0;
  /**
   * While a leader's Ready is being written: its term, and the last index that was durable before
   * it. Acknowledgements that arrive meanwhile are stepped at once (stepAcknowledgement).
   */
  private writing: { term: number; durableUpTo: number } | undefined;
  /** Membership as of `applied` (the core's membership() also counts changes not applied yet). */
  private appliedMembership: Membership = { voters: [], learners: [] };
  /** Where members listen: routing only, never membership. */
  private readonly addresses = new Map<NodeId, string>();
  private peersKey = '';
  /** Bumped by every change to `addresses`; with the members, tells updatePeers when to look again. */
  private addressesVersion = 0;
  private peersAddressesVersion = -1;
  private peersMembers = '';
  private softState: SoftState = { role: 'follower', leaderId: '' };

  private readonly proposals = new Map<number, PendingProposal<Result>>();
  /** Fires at the deadline of the oldest proposal still waiting (armProposalTimer). */
  private proposalTimer: NodeJS.Timeout | undefined;
  private readonly membershipChanges = new Map<number, PendingMembershipChange>();
  private transfers: PendingTransfer[] = [];
  /** When each peer's last message arrived (performance.now()): who can take over at a stop. */
  private readonly lastHeard = new Map<NodeId, number>();
  /**
   * Set by handOffLeadership(): this member is about to stop, so it does not answer a leader's
   * timeout_now by campaigning (it would lead only to stop moments later).
   */
  private leaving = false;
  /**
   * Read barriers are batched like etcd's linearizableReadLoop: while a ReadIndex round is in
   * flight (requested, no ReadState yet), new callers wait here and join the next round, which
   * starts once the round in flight has its ReadState. A round is always requested after every
   * caller in it arrived, so its index covers every write acknowledged before any of them called.
   */
  private waitingReads: ReadWaiter[] = [];
  private readonly reads = new Map<string, PendingRead>();
  /**
   * Every read barrier caller not answered yet, in arrival order, which is their deadlines' order
   * (they share readTimeoutMs): one timer for all of them, as for proposals, rather than one each.
   */
  private readonly unsettledReads = new Set<ReadWaiter>();
  /** Fires at the deadline of the oldest caller in unsettledReads (armReadTimer). */
  private readTimer: NodeJS.Timeout | undefined;
  private readCounter = 0;
  /**
   * Makes read contexts unique across restarts: a leader may still hold a request this member made
   * before it restarted, and answering a new read with that older index would not be linearizable.
   */
  private readonly instanceNonce = randomBytes(6).toString('hex');
  /** A received snapshot's data, between stepping its message and the Ready that persists it. */
  private readonly receivedSnapshots = new Map<string, ReceivedSnapshot>();
  private readonly snapshotsInFlight = new Set<NodeId>();
  /** Index of the last snapshot file written or installed. */
  private savedSnapshotIndex = 0;
  /** Applied index of the last snapshot attempted; automatic snapshots wait snapshotEvery entries after it. */
  private snapshotAttemptIndex = 0;
  private snapshotInProgress: { resolve(): void; reject(error: unknown): void }[] | undefined;

  private state: 'new' | 'starting' | 'running' | 'stopped' = 'new';
  private failure: unknown;

  private readonly metrics: RaftMemberMetrics;
  private election: ElectionTrace | undefined;
  /** The last leader this member learned of, and its term: a different pair is a leader change. */
  private knownLeader: { id: NodeId; term: number } | undefined;

  constructor(private readonly options: RaftGroupOptions<Result>) {
    this.logger = (options.logger ?? createLogger({ service: 'consensus', memberId: options.memberId })).child({
      group_id: options.groupId,
      engine: 'raft',
    });
    const electionTicks = positiveInteger('electionTicks', options.electionTicks, RAFT_DEFAULTS.electionTicks);
    const heartbeatTicks = positiveInteger('heartbeatTicks', options.heartbeatTicks, RAFT_DEFAULTS.heartbeatTicks);
    if (heartbeatTicks >= electionTicks) {
      throw new RangeError(`heartbeatTicks (${heartbeatTicks}) must be less than electionTicks (${electionTicks})`);
    }
    this.config = {
      electionTicks,
      heartbeatTicks,
      preVote: options.preVote ?? RAFT_DEFAULTS.preVote,
      checkQuorum: options.checkQuorum ?? RAFT_DEFAULTS.checkQuorum,
      maxAppendEntries: positiveInteger('maxAppendEntries', options.maxAppendEntries, RAFT_DEFAULTS.maxAppendEntries),
      maxAppendBytes: positiveInteger('maxAppendBytes', options.maxAppendBytes, RAFT_DEFAULTS.maxAppendBytes),
      maxInflightAppends: positiveInteger('maxInflightAppends', options.maxInflightAppends, RAFT_DEFAULTS.maxInflightAppends),
      readOnlyMode: options.readOnlyMode ?? RAFT_DEFAULTS.readOnlyMode,
      ...(options.maxUncommittedBytes !== undefined ? { maxUncommittedBytes: options.maxUncommittedBytes } : {}),
      piggybackCommit: options.piggybackCommit ?? RAFT_DEFAULTS.piggybackCommit,
    };
    this.tickMs = positiveInteger('tickMs', options.tickMs, RAFT_DEFAULTS.tickMs);
    this.snapshotEvery = positiveInteger('snapshotEvery', options.snapshotEvery, RAFT_DEFAULTS.snapshotEvery);
    this.snapshotLogRatio = options.snapshotLogRatio ?? RAFT_DEFAULTS.snapshotLogRatio;
    if (!Number.isFinite(this.snapshotLogRatio) || this.snapshotLogRatio < 0) {
      throw new RangeError(`snapshotLogRatio: must be a finite number ≥ 0 (got ${String(options.snapshotLogRatio)})`);
    }
    this.snapshotRatioMinBytes = options.snapshotRatioMinBytes ?? RAFT_DEFAULTS.snapshotRatioMinBytes;
    if (!Number.isSafeInteger(this.snapshotRatioMinBytes) || this.snapshotRatioMinBytes < 0) {
      throw new RangeError(`snapshotRatioMinBytes: must be an integer ≥ 0 (got ${String(options.snapshotRatioMinBytes)})`);
    }
    this.proposalTimeoutMs = positiveInteger('proposalTimeoutMs', options.proposalTimeoutMs, RAFT_DEFAULTS.proposalTimeoutMs);
    this.readTimeoutMs = positiveInteger('readTimeoutMs', options.readTimeoutMs, RAFT_DEFAULTS.readTimeoutMs);
    this.maxQueuedMessages = positiveInteger('maxQueuedMessages', options.maxQueuedMessages, RAFT_DEFAULTS.maxQueuedMessages);
    if (options.groupId === '') throw new RangeError('groupId: must not be empty');
    if (options.memberId === '') throw new RangeError('memberId: must not be empty');
    this.metrics = new RaftMemberMetrics(options.metrics ?? processMetrics(), options.groupId, options.memberId);
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('a RaftGroup starts once');
    this.state = 'starting';
    const { storage, recovered } = await RaftStorage.open({
      dir: join(this.options.dataDir, 'raft'),
      ...(this.options.sync !== undefined ? { sync: this.options.sync } : {}),
      ...(this.options.segmentBytes !== undefined ? { segmentBytes: this.options.segmentBytes } : {}),
    });
    this.storage = storage;
    try {
      if (recovered.truncatedBytes > 0) this.logger.warn({ bytes: recovered.truncatedBytes }, 'cut a torn write off the WAL tail');
      let initialMembership: Membership;
      if (recovered.bootstrap !== undefined) {
        initialMembership = { voters: [...recovered.bootstrap.voters], learners: [] };
        for (const [id, address] of Object.entries(recovered.bootstrap.addresses)) this.setAddress(id, address);
      } else if (recovered.snapshot !== undefined) {
        initialMembership = recovered.snapshot.meta.membership;
      } else if (recovered.entries.length === 0 && recovered.hardState.term === 0) {
        initialMembership = await this.bootstrap(storage);
      } else {
        throw new Error(
          `${this.options.dataDir}: the Raft log has entries but neither its bootstrap record nor a snapshot; restore this member's data from a replica`,
        );
      }
      this.appliedMembership = initialMembership;

      if (recovered.snapshot !== undefined) this.restoreSnapshot(recovered.snapshot);
      this.noteAddresses(recovered.entries);
      // This member's own address is whatever it listens on now.
      this.setAddress(this.options.memberId, this.options.address);

      const restored: RaftRestoredState = {
        hardState: recovered.hardState,
        entries: recovered.entries,
        initialMembership,
        applied: this.applied,
      };
      if (recovered.snapshot !== undefined) restored.snapshot = recovered.snapshot.meta;
      this.core = new RaftCore(
        { ...this.config, id: this.options.memberId, random: this.options.random ?? cryptoSeededRandom() },
        restored,
      );
      this.logger.info(
        {
          term: recovered.hardState.term,
          commit: recovered.hardState.commit,
          snapshot_index: recovered.snapshot?.meta.index ?? 0,
          entries: recovered.entries.length,
        },
        'raft member recovered',
      );
      this.observeStatus();

      this.options.transport.start(this.inbound(), this.options.address);
      this.updatePeers();
      this.state = 'running';
      // Re-applies the committed entries after the snapshot before start() returns, like the
      // single engine's replay, so status() and reads see the recovered state at once.
      await this.schedule();
      if (this.failure !== undefined) throw this.failure;
      this.ticker = setInterval(() => {
        this.pendingTicks = Math.min(this.pendingTicks + 1, this.config.electionTicks);
        void this.schedule();
      }, this.tickMs);
      this.ticker.unref();
    } catch (error) {
      this.state = 'stopped';
      await this.options.transport.close().catch(() => undefined);
      await storage.close().catch(() => undefined);
      throw error;
    }
  }

  /** Records the initial membership of a brand-new member; the only read of `peers`. */
  private async bootstrap(storage: RaftStorage): Promise<Membership> {
    const peers = this.options.peers instanceof Map ? new Map(this.options.peers) : new Map(Object.entries(this.options.peers));
    if (peers.size === 0) throw new RangeError('peers: must name the initial members of the group (id → host:port)');
    const addresses: Record<NodeId, string> = {};
    for (const [id, address] of peers) {
      if (id === '' || address === '') throw new RangeError(`peers: member ids and addresses must not be empty (got ${JSON.stringify([id, address])})`);
      const memberAddress = id === this.options.memberId ? this.options.address : address;
      addresses[id] = memberAddress;
      this.setAddress(id, memberAddress);
    }
    // A member missing from `peers` joins an existing group: it must not form a group of its own.
    const voters = peers.has(this.options.memberId) ? [...peers.keys()].sort() : [];
    await storage.bootstrap({ voters, addresses });
    this.logger.info({ voters }, voters.length > 0 ? 'bootstrapped a new raft member' : 'started a member that waits to be added to the group');
    return { voters, learners: [] };
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'new') {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopped';
    clearInterval(this.ticker);
    await this.options.transport.close();
    // The loop checks `state` before every batch: it finishes the Ready in hand and exits.
    await this.running;
    this.abandonEverything('group stopped');
    this.endElection('stopped');
    this.metrics.removeGauges();
    await this.storage?.close();
    this.logger.info('raft member stopped');
  }

  // ---------------------------------------------------------------- the ConsensusGroup API

  propose(command: Uint8Array): Promise<ProposeOutcome<Result>> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.state === 'stopped') {
      this.metrics.proposalDone('dropped', 0);
      return Promise.resolve({ kind: 'dropped', reason: 'group is stopped' });
    }
    this.requireStarted();
    const started = performance.now();
    const done = (outcome: ProposalOutcomeLabel): void => this.metrics.proposalDone(outcome, (performance.now() - started) / 1000);
    // concord.term and concord.index are set once the leader accepts it (handleEvent).
    const span = tracer.startSpan('consensus.propose', {
      attributes: {
        'concord.group_id': this.options.groupId,
        'concord.member_id': this.options.memberId,
        'concord.engine': 'raft',
        'concord.command_bytes': command.byteLength,
      },
    });
    return new Promise<ProposeOutcome<unknown>>((resolve) => {
      this.enqueue({ kind: 'propose', data: encodeCommandEntry(command), waiter: { resolve }, span });
    }).then(
      (outcome) => {
        done(outcome.kind);
        endSpan(span, outcome.kind, outcome.kind === 'applied' ? outcome.index : undefined);
        return outcome as ProposeOutcome<Result>;
      },
      (error: unknown) => {
        done('failed');
        endSpan(span, 'failed', undefined, error);
        throw error;
      },
    );
  }

  /** ReadIndex rounds this member has requested from its core (each serves a batch of read barriers). */
  get readIndexRounds(): number {
    return this.readCounter;
  }

  readBarrier(): Promise<ReadBarrierOutcome> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.state === 'stopped') return Promise.resolve({ kind: 'not_leader', ...this.leaderHint() });
    this.requireStarted();
    // The wait of a linearizable read: the ReadIndex round it joined, then applying up to its index.
    const span = tracer.startSpan('consensus.read_barrier', {
      attributes: {
        'concord.group_id': this.options.groupId,
        'concord.member_id': this.options.memberId,
        'concord.engine': 'raft',
      },
    });
    return new Promise<ReadBarrierOutcome>((resolve) => this.enqueue({ kind: 'read', waiter: { resolve } })).then(
      (outcome) => {
        endSpan(span, outcome.kind, outcome.kind === 'ready' ? outcome.index : undefined);
        return outcome;
      },
      (error: unknown) => {
        endSpan(span, 'failed', undefined, error);
        throw error;
      },
    );
  }

  changeMembership(change: MembershipChange): Promise<MembershipOutcome> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.state === 'stopped') return Promise.resolve({ kind: 'rejected', reason: 'group is stopped' });
    this.requireStarted();
    if (change.memberId === '') return Promise.resolve({ kind: 'rejected', reason: 'memberId: must not be empty' });
    if (change.kind === 'add_learner' && change.address === '') {
      return Promise.resolve({ kind: 'rejected', reason: 'address: a new member needs the host:port its peer service listens on' });
    }
    return new Promise((resolve) => this.enqueue({ kind: 'membership', change, waiter: { resolve } }));
  }

  /**
   * Hands leadership to the voter `memberId` (thesis §3.10): the core brings it up to date, then
   * tells it to campaign at once; proposals are refused meanwhile. Resolves `transferred` once
   * this member sees `memberId` lead (at once when it asks for itself and leads), `failed` when
   * the core gave up after an election timeout or another member was elected.
   */
  transferLeadership(memberId: string): Promise<TransferOutcome> {
    return this.transfer(memberId, 'request');
  }

  private transfer(memberId: string, trigger: TransferTrigger): Promise<TransferOutcome> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.state === 'stopped') return Promise.resolve({ kind: 'rejected', reason: 'group is stopped' });
    this.requireStarted();
    if (memberId === '') return Promise.resolve({ kind: 'rejected', reason: 'memberId: must not be empty' });
    const outcome = new Promise<TransferOutcome>((resolve) => this.enqueue({ kind: 'transfer', memberId, waiter: { resolve } }));
    return outcome.then((settled) => {
      this.metrics.leadershipTransfer(trigger, settled.kind);
      return settled;
    });
  }

  /** See ConsensusGroup.handOffLeadership: of the voters replicating and heard from lately, the one with the highest match index takes over. */
  async handOffLeadership(): Promise<TransferOutcome | undefined> {
    if (this.state !== 'running' || this.failure !== undefined) return undefined;
    this.leaving = true;
    const status = this.requireCore().status();
    if (status.role !== 'leader' || status.progress === undefined) return undefined;
    // Only voters that acknowledged appends in this term (replicating, not probing) and were heard
    // from within an election timeout: one that is down, cut off or just restarted cannot win.
    const heardSince = performance.now() - this.config.electionTicks * this.tickMs;
    const candidates = status.membership.voters.filter(
      (id) => id !== status.id && status.progress?.[id]?.state === 'replicate' && (this.lastHeard.get(id) ?? -Infinity) >= heardSince,
    );
    let target: NodeId | undefined;
    for (const id of candidates) {
      if (target === undefined || (status.progress[id]?.match ?? 0) > (status.progress[target]?.match ?? 0)) target = id;
    }
    if (target === undefined) return undefined;
    // An up-to-date follower takes over within a few heartbeats. One that falls silent for three
    // heartbeat intervals is stopping too (the whole group is shut down at once, and its peer
    // service has closed): the member stops at once rather than wait out the core's election
    // timeout. Two election timeouts bound the wait in any case.
    const boundMs = 2 * this.config.electionTicks * this.tickMs;
    const silenceMs = 3 * this.config.heartbeatTicks * this.tickMs;
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    let watcher: NodeJS.Timeout | undefined;
    const bounded = new Promise<TransferOutcome>((resolve) => {
      timer = setTimeout(() => resolve({ kind: 'failed', reason: `no answer within ${boundMs} ms` }), boundMs);
      watcher = setInterval(() => {
        const heard = Math.max(started, this.lastHeard.get(target) ?? started);
        if (performance.now() - heard > silenceMs) resolve({ kind: 'failed', reason: `${target} stopped answering (nothing for ${silenceMs} ms)` });
      }, this.tickMs);
    });
    const outcome = await Promise.race([this.transfer(target, 'stop'), bounded]).finally(() => {
      clearTimeout(timer);
      clearInterval(watcher);
    });
    if (outcome.kind === 'transferred') this.logger.info({ to: target, term: outcome.term }, 'leadership handed over before stopping');
    // Not a warning: when the whole group stops at once (Ctrl-C of `npm start`) no follower stays
    // to take over, and the group elects a leader the usual way when it comes back.
    else this.logger.info({ to: target, outcome: outcome.kind, reason: 'reason' in outcome ? outcome.reason : undefined }, 'leadership not handed over before stopping');
    return outcome;
  }

  snapshotNow(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.state === 'stopped') return Promise.reject(new Error('group is stopped'));
    this.requireStarted();
    return new Promise((resolve, reject) => this.enqueue({ kind: 'snapshot_now', resolve, reject }));
  }

  status(): ConsensusStatus {
    const core = this.requireCore();
    const status = core.status();
    const { voters, learners } = status.membership;
    let role: MemberRole;
    if (status.role === 'leader') role = 'leader';
    else if (status.role === 'candidate' || status.role === 'pre_candidate') role = 'candidate';
    else role = learners.includes(this.options.memberId) ? 'learner' : 'follower';
    const members: MemberInfo[] = [
      ...voters.map((memberId) => ({ memberId, address: this.addressOf(memberId), voter: true })),
      ...learners.map((memberId) => ({ memberId, address: this.addressOf(memberId), voter: false })),
    ];
    const result: ConsensusStatus = {
      engine: 'raft',
      memberId: this.options.memberId,
      role,
      term: status.term,
      commitIndex: status.commit,
      appliedIndex: this.applied,
      snapshotIndex: this.storage?.snapshotIndex ?? 0,
      members,
    };
    return { ...result, ...this.hintFor(status.leaderId) };
  }

  // ---------------------------------------------------------------- the event loop

  private inbound(): RaftInbound {
    return {
      receive: (message, senderAddress) => {
        if (this.state !== 'running') return;
        if (this.writing !== undefined && this.stepAcknowledgement(message, senderAddress)) return;
        if (this.queuedMessages >= this.maxQueuedMessages) return;
        this.queuedMessages++;
        this.enqueue({ kind: 'message', message, senderAddress });
      },
      receiveSnapshot: (snapshot) =>
        new Promise((resolve, reject) => {
          if (this.state !== 'running') {
            reject(new Error('group is not running'));
            return;
          }
          this.enqueue({ kind: 'snapshot_received', snapshot, resolve, reject });
        }),
      unreachable: (peer) => {
        if (this.state === 'running') this.enqueue({ kind: 'unreachable', peer });
      },
    };
  }

  /** A start of the loop for queued proposals is scheduled (see enqueue). */
  private proposalsPending = false;

  private enqueue(event: GroupEvent): void {
    if (this.failure !== undefined) {
      this.abandonEvent(event, 'group failed');
      return;
    }
    this.queue.push(event);
    if (event.kind === 'propose') {
      // Proposals that arrive in one turn of the event loop (the calls that one read of a socket
      // delivered, say) go into one Ready: the loop starts after them rather than at the first,
      // which would send and write that one alone and leave the rest waiting for its write.
      if (!this.proposalsPending) {
        this.proposalsPending = true;
        setImmediate(() => {
          this.proposalsPending = false;
          void this.schedule();
        });
      }
      return;
    }
    void this.schedule();
  }

  /** Starts the loop unless it runs; resolves when the current run ends. */
  private schedule(): Promise<void> {
    if (this.running === undefined && this.state !== 'stopped' && this.failure === undefined) {
      this.running = this.run().finally(() => {
        this.running = undefined;
      });
    }
    return this.running ?? Promise.resolve();
  }

  private async run(): Promise<void> {
    try {
      // At least one pass: at start the core has committed entries to re-apply and nothing queued.
      do {
        const batch = this.queue.splice(0);
        for (const event of batch) {
          if (this.state === 'stopped') {
            this.abandonEvent(event, 'group stopped');
            continue;
          }
          if (event.kind === 'snapshot_saved' || event.kind === 'snapshot_now' || event.kind === 'snapshot_received') {
            // These need I/O of their own: first bring the core's pending Ready to disk.
            await this.processReady();
            await this.handleAsyncEvent(event);
          } else {
            this.handleEvent(event);
          }
        }
        // Ticks after the messages that arrived with them: a heartbeat that queued up during a
        // slow fsync counts before the elapsed time does, which avoids needless elections.
        const ticks = this.pendingTicks;
        this.pendingTicks = 0;
        for (let i = 0; i < ticks; i++) this.requireCore().tick();
        this.startReadRound();
        await this.processReady();
        // A round answered by this Ready (a ReadState arrived) lets the next one start at once.
        while (this.state !== 'stopped' && this.startReadRound()) await this.processReady();
        this.maybeSnapshot();
      } while ((this.queue.length > 0 || this.pendingTicks > 0) && this.state !== 'stopped');
    } catch (error) {
      this.fail(error);
    }
  }

  /** Feeds one event to the core. Synchronous: the core's state cannot change under it. */
  private handleEvent(event: Exclude<GroupEvent, { kind: 'snapshot_saved' | 'snapshot_now' | 'snapshot_received' }>): void {
    const core = this.requireCore();
    switch (event.kind) {
      case 'message':
        this.queuedMessages--;
        this.lastHeard.set(event.message.from, performance.now());
        if (this.leaving && event.message.type === 'timeout_now') {
          this.logger.info({ from: event.message.from }, 'not taking leadership over: this member is stopping');
          return;
        }
        if (event.message.type === 'vote_response' || event.message.type === 'pre_vote_response') this.noteVote(event.message);
        if (event.senderAddress !== undefined && !this.addresses.has(event.message.from)) {
          // Only fills a gap (a member that joined learns where its leader listens); an address
          // the log or a snapshot gave is never overridden by what a peer claims.
          this.setAddress(event.message.from, event.senderAddress);
          this.updatePeers();
        }
        core.step(event.message);
        return;
      case 'propose': {
        const result = core.propose(event.data);
        if (result.kind === 'accepted') {
          event.span.setAttributes({ 'concord.term': result.term, 'concord.index': result.index });
          this.trackProposal(result.index, result.term, event.waiter);
        } else if (result.kind === 'not_leader') {
          event.waiter.resolve({ kind: 'not_leader', ...this.hintFor(result.leaderId) });
        } else {
          event.waiter.resolve({ kind: 'dropped', reason: result.reason });
        }
        return;
      }
      case 'read': {
        // Joins the next round; startReadRound() requests it once no round is in flight.
        const waiter: ReadWaiter = { resolve: event.waiter.resolve, deadline: performance.now() + this.readTimeoutMs, settled: false };
        this.unsettledReads.add(waiter);
        this.armReadTimer();
        this.waitingReads.push(waiter);
        return;
      }
      case 'membership': {
        const change: CoreMembershipChange = { kind: event.change.kind, node: event.change.memberId };
        // Checked before the address note below: a refused change (adding an id that is already a
        // member, say) must not leave a wrong address for that member in the log.
        const refused = core.membershipChangeRefusal(change);
        if (refused !== undefined) {
          if (refused.kind === 'not_leader') event.waiter.resolve({ kind: 'not_leader', ...this.hintFor(refused.leaderId) });
          else event.waiter.resolve({ kind: 'rejected', reason: refused.reason });
          return;
        }
        if (event.change.kind === 'add_learner' && this.addresses.get(change.node) !== event.change.address) {
          // The address goes in the log just before the change (see entry-envelope.ts). Should the
          // change itself be refused, the entry is a harmless routing note.
          const noted = core.propose(encodeMemberAddressEntry(change.node, event.change.address));
          if (noted.kind === 'not_leader') {
            event.waiter.resolve({ kind: 'not_leader', ...this.hintFor(noted.leaderId) });
            return;
          }
          // The leader must reach the new member as soon as the change is appended.
          if (noted.kind === 'accepted') this.setAddress(change.node, event.change.address);
        }
        const result = core.proposeMembershipChange(change);
        if (result.kind === 'accepted') {
          this.replaceMembershipWaiter(result.index);
          this.membershipChanges.set(result.index, { term: result.term, change, resolve: event.waiter.resolve });
        } else if (result.kind === 'not_leader') {
          event.waiter.resolve({ kind: 'not_leader', ...this.hintFor(result.leaderId) });
        } else {
          event.waiter.resolve({ kind: 'rejected', reason: result.reason });
        }
        return;
      }
      case 'transfer': {
        const status = core.status();
        if (event.memberId === this.options.memberId && status.role === 'leader') {
          event.waiter.resolve({ kind: 'transferred', leaderId: status.id, term: status.term });
          return;
        }
        const result = core.transferLeadership(event.memberId);
        if (result.kind === 'not_leader') event.waiter.resolve({ kind: 'not_leader', ...this.hintFor(result.leaderId) });
        else if (result.kind === 'rejected') event.waiter.resolve({ kind: 'rejected', reason: result.reason });
        else {
          this.logger.info({ to: event.memberId, term: status.term }, 'leadership transfer started');
          const deadline = performance.now() + 3 * this.config.electionTicks * this.tickMs;
          this.transfers.push({ to: event.memberId, deadline, resolve: event.waiter.resolve });
        }
        return;
      }
      case 'snapshot_sent':
        this.snapshotsInFlight.delete(event.to);
        core.reportSnapshot(event.to, event.succeeded);
        return;
      case 'unreachable':
        core.reportUnreachable(event.peer);
        return;
    }
  }

  private async handleAsyncEvent(event: Extract<GroupEvent, { kind: 'snapshot_saved' | 'snapshot_now' | 'snapshot_received' }>): Promise<void> {
    const core = this.requireCore();
    switch (event.kind) {
      case 'snapshot_received': {
        const { snapshot } = event;
        const key = snapshotKey(snapshot.meta);
        this.receivedSnapshots.set(key, snapshot);
        try {
          core.step(snapshotMessage(snapshot.from, snapshot.to, snapshot.term, snapshot.meta));
          await this.processReady();
        } catch (error) {
          event.reject(error);
          throw error;
        } finally {
          this.receivedSnapshots.delete(key);
        }
        event.resolve({ term: core.status().term });
        return;
      }
      case 'snapshot_now':
        if (this.applied <= this.savedSnapshotIndex && this.snapshotInProgress === undefined) {
          event.resolve();
          return;
        }
        this.takeSnapshot({ resolve: event.resolve, reject: event.reject });
        return;
      case 'snapshot_saved': {
        // Re-checked after the await that wrote the file: a snapshot received from the leader
        // meanwhile may already cover this one (recordSnapshot then ignores it).
        const storage = this.requireStorage();
        if (await storage.recordSnapshot(event.meta)) {
          core.compact(event.meta.index);
          this.logger.debug({ index: event.meta.index, term: event.meta.term }, 'snapshot recorded, log compacted');
        }
        for (const waiter of event.waiters) waiter.resolve();
        return;
      }
    }
  }

  /** Drains the core: persist → send → apply → advance, Ready after Ready. */
  private async processReady(): Promise<void> {
    const core = this.requireCore();
    const storage = this.requireStorage();
    while (core.hasReady()) {
      const ready = core.ready();
      if (ready.softState !== undefined) this.onSoftState(ready.softState);

      this.sendMessages(ready.messages);

      // Committed entries that were already durable here before this Ready are applied now,
      // before the Ready's own write and fsync: their answers need not wait for the disk (etcd
      // applies in parallel with persisting too). On a leader that is every committed entry, since
      // its own entries count toward a majority only once persisted; so a put is answered as
      // soon as the acknowledgement that commits it is stepped. Entries this Ready writes (a
      // follower that learns an append and its commit together) wait for the write, as does
      // everything when a snapshot is to be installed first.
      const committed = ready.committedEntries;
      let applyNow = 0;
      const durableUpTo = Math.min(storage.lastIndex, (ready.entries[0]?.index ?? Infinity) - 1);
      if (ready.snapshot === undefined) {
        while (applyNow < committed.length && committed[applyNow]!.index <= durableUpTo) applyNow++;
        for (let i = 0; i < applyNow; i++) this.applyEntry(committed[i]!);
        // Reads wait for applied ≥ their index only: they may go now too.
        for (const readState of ready.readStates) this.onReadState(readState);
        if (applyNow > 0 || ready.readStates.length > 0) this.resolveReads();
      }

      let received: ReceivedSnapshot | undefined;
      let receivedPayload: SnapshotPayload | undefined;
      if (ready.snapshot !== undefined) {
        received = this.receivedSnapshots.get(snapshotKey(ready.snapshot));
        if (received === undefined) throw new Error(`the core asked to install snapshot ${snapshotKey(ready.snapshot)} that was never received`);
        receivedPayload = decodeSnapshotPayload(received.data);
      }
      const update: Parameters<RaftStorage['persist']>[0] = { entries: ready.entries };
      if (ready.hardState !== undefined) update.hardState = ready.hardState;
      if (receivedPayload !== undefined) update.snapshot = receivedPayload;
      const persistStarted = performance.now();
      // A leader steps acknowledgements while it writes (see stepAcknowledgement).
      const leadingTerm = ready.snapshot === undefined ? core.leadingTerm() : undefined;
      if (leadingTerm !== undefined) this.writing = { term: leadingTerm, durableUpTo };
      try {
        await storage.persist(update);
      } finally {
        this.writing = undefined;
      }
      // A Ready with a received snapshot also writes the snapshot file: not a WAL append to time.
      if (receivedPayload === undefined && (ready.entries.length > 0 || ready.hardState !== undefined)) {
        this.metrics.walAppended((performance.now() - persistStarted) / 1000);
      }
      if (ready.entries.length > 0) this.metrics.appendBatch('persist', ready.entries.length);

      // Durable now. The Ready in hand is still exactly what the core asked for: only
      // acknowledgements were stepped while the loop awaited (a leader's; what they produce,
      // beyond the entries applied at once, goes into the next Ready).
      if (receivedPayload !== undefined) this.installSnapshot(receivedPayload);
      this.noteAddresses(ready.entries);
      this.sendMessages(ready.messagesAfterPersist);

      for (let i = applyNow; i < committed.length; i++) this.applyEntry(committed[i]!);
      if (ready.snapshot !== undefined) for (const readState of ready.readStates) this.onReadState(readState);
      this.resolveReads();
      this.updatePeers();
      core.advance();
      this.observeStatus();
    }
    this.settleTransfers();
  }

  /**
   * While the leader awaits its own write, an acknowledgement of its current term is stepped as it
   * arrives instead of waiting for the write to end, and the entries it commits that were durable
   * here before the Ready in hand are applied at once: their puts need not wait out a write of
   * later entries (at 64 requests in flight, a leader is nearly always writing the next batch when
   * the acknowledgements of the last one come back). The core allows events between ready() and
   * advance() (what they produce goes into the next Ready) and counts the entries handed out here
   * as applied (RaftCore.applyCommittedSinceReady). Only acknowledgements take this path, and only
   * from members whose address is known: everything else waits for the loop as before. Returns
   * whether it was taken.
   */
  private stepAcknowledgement(message: Message, senderAddress: string | undefined): boolean {
    const writing = this.writing!;
    if (message.type !== 'append_response' || message.reject || message.term !== writing.term || this.failure !== undefined) return false;
    if (senderAddress !== undefined && !this.addresses.has(message.from)) return false;
    try {
      const core = this.requireCore();
      this.lastHeard.set(message.from, performance.now());
      core.step(message);
      const entries = core.applyCommittedSinceReady(this.applied, writing.durableUpTo);
      if (entries.length === 0) return true;
      for (const entry of entries) this.applyEntry(entry);
      this.resolveReads();
    } catch (error) {
      this.fail(error);
    }
    return true;
  }

  /** Answers the transfers whose outcome the core's state now shows (see transferLeadership). */
  private settleTransfers(): void {
    if (this.transfers.length === 0) return;
    const status = this.requireCore().status();
    const now = performance.now();
    const timeoutMs = this.config.electionTicks * this.tickMs;
    this.transfers = this.transfers.filter((transfer) => {
      if (status.leaderId === transfer.to) {
        transfer.resolve({ kind: 'transferred', leaderId: transfer.to, term: status.term });
      } else if (status.role === 'leader' && status.leadTransferee !== transfer.to) {
        transfer.resolve({
          kind: 'failed',
          reason: `${transfer.to} did not take over within an election timeout (${timeoutMs} ms): it may be behind or unreachable; ${status.id} still leads`,
        });
      } else if (status.role !== 'leader' && status.leaderId !== '') {
        transfer.resolve({ kind: 'failed', reason: `${status.leaderId} was elected instead of ${transfer.to}` });
      } else if (now > transfer.deadline) {
        transfer.resolve({ kind: 'failed', reason: `no leader was elected within ${3 * timeoutMs} ms of the transfer to ${transfer.to}` });
      } else {
        return true;
      }
      return false;
    });
  }

  // ---------------------------------------------------------------- Ready parts

  private sendMessages(messages: readonly Message[]): void {
    if (messages.length === 0) return;
    const wire: Message[] = [];
    let voteRequests = false;
    for (const message of messages) {
      if (message.type === 'snapshot') this.sendSnapshot(message);
      else wire.push(message);
      if (message.type === 'append') this.metrics.appendBatch('send', message.entries.length);
      else if (message.type === 'vote' || message.type === 'pre_vote') voteRequests = true;
    }
    if (voteRequests && this.election !== undefined) this.election.rounds++;
    if (wire.length > 0) this.options.transport.send(wire);
  }

  /** Streams the latest stored snapshot to a follower behind the compacted log, off the loop. */
  private sendSnapshot(message: Message): void {
    if (this.snapshotsInFlight.has(message.to)) return;
    this.snapshotsInFlight.add(message.to);
    const storage = this.requireStorage();
    void (async () => {
      let succeeded = false;
      try {
        const file = await storage.readSnapshotFile();
        if (file !== undefined) {
          const { meta } = decodeSnapshotPayload(file);
          this.logger.info({ to: message.to, index: meta.index, bytes: file.length }, 'sending a snapshot');
          succeeded = await this.options.transport.sendSnapshot(message.to, message.term, meta, file);
          if (succeeded) this.metrics.snapshot('sent');
        }
      } catch (error) {
        this.logger.warn({ err: error, to: message.to }, 'sending a snapshot failed');
      }
      if (this.state === 'running') this.enqueue({ kind: 'snapshot_sent', to: message.to, succeeded });
      else this.snapshotsInFlight.delete(message.to);
    })();
  }

  private onSoftState(next: SoftState): void {
    const previous = this.softState;
    this.softState = next;
    this.traceElection(previous, next);
    if (next.role !== previous.role || next.leaderId !== previous.leaderId) {
      this.logger.info({ role: next.role, leader_id: next.leaderId || undefined, term: this.core?.status().term }, 'raft role changed');
    }
    if (next.leaderId !== previous.leaderId) {
      // A read-index round belongs to the leader that started it; with a new leader (or none)
      // its ReadState will not come. Barriers that already have one stay valid.
      for (const [key, read] of this.reads) {
        if (read.index === undefined) this.settleRead(key, { kind: 'not_leader', ...this.hintFor(next.leaderId) });
      }
    }
  }

  private applyEntry(entry: Entry): void {
    if (entry.index <= this.applied) return;
    if (entry.index !== this.applied + 1) {
      throw new Error(`committed entry ${entry.index} does not follow the applied index ${this.applied}`);
    }
    this.appliedBytesSinceSnapshot += entry.data.byteLength;
    switch (entry.type) {
      case 'normal': {
        const content = decodeNormalEntry(entry.data, entry.index);
        if (content.kind === 'command') {
          const result = this.options.stateMachine.apply(content.command, entry.index);
          this.settleProposal(entry, { kind: 'applied', index: entry.index, result });
        } else {
          if (content.kind === 'member_address') this.setAddress(content.node, content.address);
          this.settleProposal(entry, undefined);
        }
        break;
      }
      case 'noop':
        this.settleProposal(entry, undefined);
        break;
      case 'conf_change': {
        const { change, membership } = decodeConfChange(entry.data);
        this.appliedMembership = membership;
        this.settleProposal(entry, undefined);
        const waiter = this.membershipChanges.get(entry.index);
        if (waiter !== undefined) {
          this.membershipChanges.delete(entry.index);
          waiter.resolve(
            waiter.term === entry.term
              ? { kind: 'applied', index: entry.index, members: this.membersOf(this.appliedMembership) }
              : { kind: 'rejected', reason: `a leader of term ${entry.term} replaced the change at index ${entry.index}` },
          );
        }
        this.logger.info({ index: entry.index, change, membership }, 'membership change applied');
        break;
      }
    }
    this.applied = entry.index;
  }

  /**
   * Resolves the proposal waiting on `entry.index`. Index AND term must match what propose()
   * returned: a different term there means another leader's entry committed at that index, so
   * ours was overwritten and can never commit (Log Matching) — `dropped`, safe to retry.
   */
  private settleProposal(entry: Entry, applied: ProposeOutcome<Result> | undefined): void {
    const pending = this.proposals.get(entry.index);
    if (pending === undefined) return;
    this.proposals.delete(entry.index);
    if (pending.term === entry.term && applied !== undefined) pending.resolve(applied);
    else pending.resolve({ kind: 'dropped', reason: `a leader of term ${entry.term} committed another entry at index ${entry.index}` });
  }

  private trackProposal(index: number, term: number, waiter: Resolved<ProposeOutcome<unknown>>): void {
    const previous = this.proposals.get(index);
    if (previous !== undefined) {
      // This member, leader again, reused the index of an entry it proposed in an earlier term.
      // That entry is gone from this log but may survive on another member that could still
      // become leader and commit it: the outcome is unknown, not dropped.
      this.proposals.delete(index);
      previous.resolve({ kind: 'unknown', reason: `index ${index} was reused in term ${term}; the earlier entry may still commit` });
    }
    // One timer for all of them rather than one each: proposals are kept in the order they were
    // made (a reused index was deleted above, so it goes to the end), which is their deadlines' order.
    this.proposals.set(index, { term, resolve: waiter.resolve, deadline: performance.now() + this.proposalTimeoutMs });
    this.armProposalTimer();
  }

  /** Sets the timer for the first proposal's deadline, unless it is set or none is waiting. */
  private armProposalTimer(): void {
    if (this.proposalTimer !== undefined) return;
    const first = this.proposals.values().next();
    if (first.done === true) return;
    this.proposalTimer = setTimeout(this.expireProposals, Math.max(0, first.value.deadline - performance.now()));
    this.proposalTimer.unref();
  }

  private readonly expireProposals = (): void => {
    this.proposalTimer = undefined;
    const now = performance.now();
    for (const [index, pending] of this.proposals) {
      if (pending.deadline > now) break;
      this.proposals.delete(index);
      pending.resolve({ kind: 'unknown', reason: `not applied within ${this.proposalTimeoutMs} ms; it may still commit` });
    }
    this.armProposalTimer();
  };

  private replaceMembershipWaiter(index: number): void {
    const previous = this.membershipChanges.get(index);
    if (previous === undefined) return;
    this.membershipChanges.delete(index);
    previous.resolve({ kind: 'rejected', reason: `index ${index} was reused by a later leader term; check status() for the outcome` });
  }

  /**
   * Requests one ReadIndex round for every caller waiting, unless a round is still in flight (it
   * has no ReadState yet) or nobody waits. Returns whether it fed the core a request. Called
   * between Readies only, never between ready() and advance().
   */
  private startReadRound(): boolean {
    const waiting = this.waitingReads.filter((waiter) => !waiter.settled);
    this.waitingReads = [];
    if (waiting.length === 0) return false;
    for (const [key, read] of this.reads) {
      if (read.index !== undefined) continue;
      // A round whose callers all timed out is given up: its ReadState may never come.
      if (read.waiters.every((waiter) => waiter.settled)) {
        this.reads.delete(key);
        continue;
      }
      this.waitingReads = waiting;
      return false;
    }
    const key = `${this.options.memberId}/${this.instanceNonce}/${++this.readCounter}`;
    const result = this.requireCore().readIndex(Buffer.from(key, 'utf8'));
    if (result.kind === 'not_leader') {
      const hint = this.hintFor(result.leaderId);
      for (const waiter of waiting) this.settleWaiter(waiter, { kind: 'not_leader', ...hint });
      return false;
    }
    this.reads.set(key, { waiters: waiting });
    return true;
  }

  private onReadState(readState: ReadState): void {
    const key = Buffer.from(readState.context).toString('utf8');
    const read = this.reads.get(key);
    if (read !== undefined) read.index = readState.index;
  }

  /** Read barriers whose ReadState index this member has applied are linearizable now (thesis §6.4). */
  private resolveReads(): void {
    for (const [key, read] of this.reads) {
      if (read.index !== undefined && read.index <= this.applied) this.settleRead(key, { kind: 'ready', index: read.index });
    }
  }

  /** Answers every caller of one round that is still waiting for it. */
  private settleRead(key: string, outcome: ReadBarrierOutcome): void {
    const read = this.reads.get(key);
    if (read === undefined) return;
    this.reads.delete(key);
    for (const waiter of read.waiters) this.settleWaiter(waiter, outcome);
  }

  private settleWaiter(waiter: ReadWaiter, outcome: ReadBarrierOutcome): void {
    if (waiter.settled) return;
    waiter.settled = true;
    this.unsettledReads.delete(waiter);
    waiter.resolve(outcome);
  }

  /** Sets the timer for the oldest unanswered read barrier's deadline, unless it is set or none waits. */
  private armReadTimer(): void {
    if (this.readTimer !== undefined) return;
    const first = this.unsettledReads.values().next();
    if (first.done === true) return;
    this.readTimer = setTimeout(this.expireReads, Math.max(0, first.value.deadline - performance.now()));
    this.readTimer.unref();
  }

  /** Answers not_leader every read barrier caller past its deadline: no leader confirmed this one's leadership in time. */
  private readonly expireReads = (): void => {
    this.readTimer = undefined;
    const now = performance.now();
    for (const waiter of this.unsettledReads) {
      if (waiter.deadline > now) break;
      this.settleWaiter(waiter, { kind: 'not_leader', ...this.leaderHint() });
    }
    this.armReadTimer();
  };

  // ---------------------------------------------------------------- snapshots

  private maybeSnapshot(): void {
    if (this.state !== 'running' || this.snapshotInProgress !== undefined) return;
    if (this.applied - Math.max(this.snapshotAttemptIndex, this.savedSnapshotIndex) < this.snapshotEvery) return;
    // A large state waits for a log worth a share of it (RAFT_DEFAULTS.snapshotLogRatio).
    const large = this.lastSnapshotBytes > 0 && this.lastSnapshotBytes >= this.snapshotRatioMinBytes;
    if (large && this.appliedBytesSinceSnapshot < this.snapshotLogRatio * this.lastSnapshotBytes) return;
    this.takeSnapshot(undefined);
  }

  /**
   * Captures the state machine at the applied index (synchronously, on the loop, so it matches
   * `applied` exactly), writes the file off the loop, then queues snapshot_saved to append the
   * marker and compact the core's log.
   */
  private takeSnapshot(waiter: { resolve(): void; reject(error: unknown): void } | undefined): void {
    if (this.snapshotInProgress !== undefined) {
      if (waiter !== undefined) this.snapshotInProgress.push(waiter);
      return;
    }
    const waiters = waiter === undefined ? [] : [waiter];
    this.snapshotInProgress = waiters;
    // Addresses of everyone the log knows so far: members, and ones whose change is not applied yet.
    const current = this.requireCore().membership();
    const members = new Set([...this.appliedMembership.voters, ...this.appliedMembership.learners, ...current.voters, ...current.learners]);
    const addresses: Record<NodeId, string> = {};
    for (const id of members) {
      const address = this.addresses.get(id);
      if (address !== undefined) addresses[id] = address;
    }
    const meta = this.requireCore().snapshotMetaAt(this.applied);
    // The state is captured now, at `applied`; a state machine with snapshotChunks serializes it
    // afterwards, piece by piece as the file is written, while the loop goes on applying.
    const machine = this.options.stateMachine;
    const storage = this.requireStorage();
    let writing: Promise<number | undefined>;
    try {
      if (machine.snapshotChunks !== undefined) {
        writing = storage.writeSnapshotFileFrom(meta, addresses, machine.snapshotChunks());
      } else {
        const stateMachineData = machine.snapshot();
        writing = storage.writeSnapshotFile({ meta, addresses, stateMachineData }).then((written) => (written ? stateMachineData.byteLength : undefined));
      }
    } catch (error) {
      writing = Promise.reject(error);
    }
    this.snapshotAttemptIndex = meta.index;
    // Entries applied from now on count towards the next snapshot; given back if this one fails.
    const bytesCaptured = this.appliedBytesSinceSnapshot;
    this.appliedBytesSinceSnapshot = 0;
    const payload: Pick<SnapshotPayload, 'meta'> = { meta };
    writing.then(
      (stateBytes) => {
        this.snapshotInProgress = undefined;
        const written = stateBytes !== undefined;
        if (written) {
          this.savedSnapshotIndex = Math.max(this.savedSnapshotIndex, payload.meta.index);
          this.lastSnapshotBytes = stateBytes;
          this.metrics.snapshot('taken');
        }
        if (!written) {
          for (const w of waiters) w.resolve();
          return;
        }
        if (this.state === 'running') this.enqueue({ kind: 'snapshot_saved', meta: payload.meta, waiters });
        else for (const w of waiters) w.resolve();
      },
      (error: unknown) => {
        this.snapshotInProgress = undefined;
        this.appliedBytesSinceSnapshot += bytesCaptured;
        for (const w of waiters) w.reject(error);
        // A failed snapshot write leaves the log intact; the next attempt comes snapshotEvery
        // entries later (or with snapshotNow).
        this.logger.error({ err: error, index: payload.meta.index }, 'writing a snapshot failed');
      },
    );
  }

  /** After a snapshot from the leader is durable: the state machine takes its state. */
  private installSnapshot(payload: SnapshotPayload): void {
    this.restoreSnapshot(payload);
    this.metrics.snapshot('installed');
    this.logger.info({ index: payload.meta.index, term: payload.meta.term }, 'installed a snapshot from the leader');
    // Entries up to the snapshot are in its state, but whether one of ours is among them cannot be told.
    for (const [index, pending] of this.proposals) {
      if (index > payload.meta.index) continue;
      this.proposals.delete(index);
      pending.resolve({ kind: 'unknown', reason: `replaced by a snapshot at index ${payload.meta.index}` });
    }
    for (const [index, pending] of this.membershipChanges) {
      if (index > payload.meta.index) continue;
      this.membershipChanges.delete(index);
      const inEffect = changeInEffect(payload.meta.membership, pending.change);
      pending.resolve(
        inEffect
          ? { kind: 'applied', index, members: this.membersOf(payload.meta.membership) }
          : { kind: 'rejected', reason: `replaced by a snapshot at index ${payload.meta.index} without this change` },
      );
    }
  }

  private restoreSnapshot(payload: SnapshotPayload): void {
    this.options.stateMachine.restore(payload.stateMachineData);
    this.applied = payload.meta.index;
    this.lastSnapshotBytes = payload.stateMachineData.byteLength;
    this.appliedBytesSinceSnapshot = 0;
    this.appliedMembership = payload.meta.membership;
    this.savedSnapshotIndex = Math.max(this.savedSnapshotIndex, payload.meta.index);
    this.snapshotAttemptIndex = Math.max(this.snapshotAttemptIndex, payload.meta.index);
    for (const [id, address] of Object.entries(payload.addresses)) this.setAddress(id, address);
  }

  // ---------------------------------------------------------------- members and addresses

  /**
   * Learns member addresses from entries as they are appended, not only when applied: the core
   * counts a new member from the moment its change is appended, and this member may have to
   * replicate to it as leader before the change commits.
   */
  private noteAddresses(entries: readonly Entry[]): void {
    for (const entry of entries) {
      if (entry.type !== 'normal' || entry.data[0] !== 1) continue;
      const content = decodeNormalEntry(entry.data, entry.index);
      if (content.kind === 'member_address') this.setAddress(content.node, content.address);
    }
  }

  /**
   * Points the transport at every member it knows an address for. Not only the current
   * membership: a member still waiting to be added has none, yet must answer the leader.
   */
  private setAddress(memberId: NodeId, address: string): void {
    if (this.addresses.get(memberId) === address) return;
    this.addresses.set(memberId, address);
    this.addressesVersion++;
  }

  /** Called after every Ready: cheap unless the addresses or the configuration changed. */
  private updatePeers(): void {
    const membership = this.requireCore().membership();
    const members = `${membership.voters.join(',')}|${membership.learners.join(',')}`;
    if (members === this.peersMembers && this.addressesVersion === this.peersAddressesVersion) return;
    this.peersMembers = members;
    this.peersAddressesVersion = this.addressesVersion;
    const peers = new Map<NodeId, string>();
    for (const [id, address] of this.addresses) if (id !== this.options.memberId) peers.set(id, address);
    const unknown = [...membership.voters, ...membership.learners].filter((id) => id !== this.options.memberId && !peers.has(id));
    const key = JSON.stringify([[...peers].sort(), unknown.sort()]);
    if (key === this.peersKey) return;
    this.peersKey = key;
    if (unknown.length > 0) this.logger.warn({ peers: unknown }, 'no address known for these members; messages to them are dropped');
    this.options.transport.setPeers(peers);
  }

  private addressOf(memberId: NodeId): string {
    if (memberId === this.options.memberId) return this.options.address;
    return this.addresses.get(memberId) ?? '';
  }

  private membersOf(membership: Membership): MemberInfo[] {
    return [
      ...membership.voters.map((memberId) => ({ memberId, address: this.addressOf(memberId), voter: true })),
      ...membership.learners.map((memberId) => ({ memberId, address: this.addressOf(memberId), voter: false })),
    ];
  }

  private hintFor(leaderId: NodeId | ''): LeaderHint {
    if (leaderId === '') return {};
    const hint: LeaderHint = { leaderId };
    const address = this.addresses.get(leaderId) ?? (leaderId === this.options.memberId ? this.options.address : undefined);
    if (address !== undefined) hint.leaderAddress = address;
    return hint;
  }

  private leaderHint(): LeaderHint {
    return this.core === undefined ? {} : this.hintFor(this.core.status().leaderId);
  }

  // ---------------------------------------------------------------- metrics and election spans

  /** After each Ready and at start: the gauges, and a leader change if one was learned of. */
  private observeStatus(): void {
    const status = this.requireCore().status();
    this.metrics.setGauges({ term: status.term, isLeader: status.role === 'leader', commitIndex: status.commit, appliedIndex: this.applied });
    if (status.leaderId !== '' && (this.knownLeader?.id !== status.leaderId || this.knownLeader.term !== status.term)) {
      this.knownLeader = { id: status.leaderId, term: status.term };
      this.metrics.leaderChanged();
    }
    const election = this.election;
    if (election !== undefined && status.term !== election.term) {
      // A candidate that timed out campaigns again in the next term: a new round of answers.
      election.term = status.term;
      election.answers.clear();
    }
  }

  /** Starts, advances or ends the election span as the role changes (softState of a Ready). */
  private traceElection(previous: SoftState, next: SoftState): void {
    const campaigning = next.role === 'pre_candidate' || next.role === 'candidate';
    if (this.election === undefined && (campaigning || (next.role === 'leader' && previous.role !== 'leader'))) {
      // Also when the whole election fit in one Ready (a group of one): the span starts and ends here.
      const term = this.requireCore().status().term;
      this.election = {
        span: tracer.startSpan('raft.election', {
          root: true,
          attributes: {
            'concord.group_id': this.options.groupId,
            'concord.member_id': this.options.memberId,
            'concord.engine': 'raft',
            'concord.pre_vote': this.config.preVote,
          },
        }),
        phase: next.role === 'pre_candidate' ? 'pre_vote' : 'vote',
        term,
        rounds: 0,
        answers: new Map(),
      };
    }
    const election = this.election;
    if (election === undefined) return;
    if (next.role === 'candidate' && election.phase === 'pre_vote') {
      const { granted, rejected } = this.tally(election);
      election.span.setAttributes({ 'concord.pre_votes_granted': granted, 'concord.pre_votes_rejected': rejected });
      election.span.addEvent('pre-vote won');
      election.phase = 'vote';
      election.answers.clear();
    } else if (next.role === 'leader') {
      this.endElection('won');
    } else if (next.role === 'follower') {
      if (next.leaderId !== '') election.span.setAttribute('concord.leader_id', next.leaderId);
      this.endElection('lost');
    }
  }

  /** Records a voter's answer to the current round of the election this member runs. */
  private noteVote(message: Message): void {
    const election = this.election;
    if (election === undefined) return;
    if ((message.type === 'vote_response') !== (election.phase === 'vote')) return;
    // An answer to an earlier round carries an earlier term (a pre-vote grant carries the term it would campaign in).
    const term = this.requireCore().status().term;
    if (message.term < term) return;
    election.answers.set(message.from, !message.reject);
  }

  /** Votes so far in this round, this member's own included. */
  private tally(election: ElectionTrace): { granted: number; rejected: number } {
    let granted = 1;
    let rejected = 0;
    for (const answer of election.answers.values()) {
      if (answer) granted++;
      else rejected++;
    }
    return { granted, rejected };
  }

  private endElection(outcome: 'won' | 'lost' | 'stopped' | 'failed'): void {
    const election = this.election;
    if (election === undefined) return;
    this.election = undefined;
    const { granted, rejected } = this.tally(election);
    const core = this.core;
    const status = core?.status();
    const attributes: Record<string, string | number> = {
      'concord.outcome': outcome,
      'concord.term': status?.term ?? election.term,
      'concord.rounds': election.rounds,
      'concord.voters': status?.membership.voters.length ?? 0,
    };
    // Lost at the pre-vote stage, the pre-vote's answers are the ones that tell why.
    const prefix = election.phase === 'vote' ? 'concord.votes' : 'concord.pre_votes';
    attributes[`${prefix}_granted`] = granted;
    attributes[`${prefix}_rejected`] = rejected;
    election.span.setAttributes(attributes);
    election.span.end();
  }

  // ---------------------------------------------------------------- failure and shutdown

  /** A failed fsync leaves the on-disk state unknown: stop rather than guess (the WAL refuses too). */
  private fail(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.logger.fatal({ err: error }, 'raft member failed; restart it to recover from its log');
    clearInterval(this.ticker);
    this.abandonEverything('group failed');
    this.endElection('failed');
    this.metrics.removeGauges();
    void this.options.transport.close();
  }

  private abandonEvent(event: GroupEvent, reason: string): void {
    switch (event.kind) {
      case 'propose':
        event.waiter.resolve({ kind: 'dropped', reason });
        return;
      case 'read':
        event.waiter.resolve({ kind: 'not_leader', ...this.leaderHint() });
        return;
      case 'membership':
      case 'transfer':
        event.waiter.resolve({ kind: 'rejected', reason });
        return;
      case 'snapshot_received':
      case 'snapshot_now':
        event.reject(new Error(reason));
        return;
      case 'snapshot_saved':
        for (const waiter of event.waiters) waiter.resolve();
        return;
      case 'message':
        this.queuedMessages--;
        return;
      case 'snapshot_sent':
      case 'unreachable':
        return;
    }
  }

  /**
   * Answers everyone still waiting. Accepted proposals resolve `unknown`, not `dropped`: their
   * entries are in the log and may commit through the other members.
   */
  private abandonEverything(reason: string): void {
    for (const event of this.queue.splice(0)) this.abandonEvent(event, reason);
    for (const [index, pending] of this.proposals) {
      pending.resolve({ kind: 'unknown', reason: `${reason}; the entry at index ${index} may still commit` });
    }
    this.proposals.clear();
    clearTimeout(this.proposalTimer);
    this.proposalTimer = undefined;
    for (const [index, pending] of this.membershipChanges) {
      pending.resolve({ kind: 'rejected', reason: `${reason} before the change at index ${index} was applied; check status()` });
    }
    this.membershipChanges.clear();
    for (const transfer of this.transfers.splice(0)) transfer.resolve({ kind: 'failed', reason: `${reason} before ${transfer.to} took over` });
    for (const key of [...this.reads.keys()]) this.settleRead(key, { kind: 'not_leader', ...this.leaderHint() });
    for (const waiter of this.waitingReads.splice(0)) this.settleWaiter(waiter, { kind: 'not_leader', ...this.leaderHint() });
    for (const waiter of this.unsettledReads) this.settleWaiter(waiter, { kind: 'not_leader', ...this.leaderHint() });
    clearTimeout(this.readTimer);
    this.readTimer = undefined;
    for (const waiter of this.snapshotInProgress ?? []) waiter.reject(new Error(reason));
    this.snapshotInProgress = undefined;
  }

  private requireStarted(): void {
    if (this.state !== 'running') throw new Error('consensus group used before start()');
  }

  private requireCore(): RaftCore {
    if (this.core === undefined) throw new Error('consensus group used before start()');
    return this.core;
  }

  private requireStorage(): RaftStorage {
    if (this.storage === undefined) throw new Error('consensus group used before start()');
    return this.storage;
  }
}

function snapshotKey(meta: SnapshotMeta): string {
  return `${meta.index}/${meta.term}`;
}

function endSpan(span: Span, outcome: string, index: number | undefined, error?: unknown): void {
  span.setAttribute('concord.outcome', outcome);
  if (index !== undefined) span.setAttribute('concord.index', index);
  if (error !== undefined) {
    span.recordException(error instanceof Error ? error : new Error(String(error)));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}
