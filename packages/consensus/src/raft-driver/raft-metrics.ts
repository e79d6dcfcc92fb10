// The concord_raft_* metrics of one member of one group (labels group, member); docs/metrics.md
// lists them. The driver calls these from its event loop: each is a label lookup done once here
// and a number update per call, cheap enough to run on every Ready.

import { BATCH_SIZE_BUCKETS, LATENCY_BUCKETS_SECONDS, type HotHistogramChild, type Metrics } from '@concord/runtime';

export type ProposalOutcomeLabel = 'applied' | 'not_leader' | 'dropped' | 'unknown' | 'failed';
export type SnapshotKind = 'taken' | 'installed' | 'sent';
export type AppendBatchKind = 'persist' | 'send';
/** Who asked for a leadership transfer: an operator (transferLeadership) or this member's graceful stop. */
export type TransferTrigger = 'request' | 'stop';

export interface RaftGaugeValues {
  term: number;
  isLeader: boolean;
  commitIndex: number;
  appliedIndex: number;
}

export class RaftMemberMetrics {
  private readonly labels: { group: string; member: string };
  private readonly term;
  private readonly isLeader;
  private readonly commitIndex;
  private readonly appliedIndex;
  private readonly leaderChanges;
  private readonly proposalSeconds;
  private readonly appendBatchEntries;
  private readonly fsyncSeconds;
  private readonly snapshots;
  private readonly transfers;
  private readonly proposalChildren = new Map<ProposalOutcomeLabel, HotHistogramChild>();
  private readonly appendChildren = new Map<AppendBatchKind, HotHistogramChild>();
  private fsyncChild: HotHistogramChild | undefined;

  constructor(metrics: Metrics, group: string, member: string) {
    this.labels = { group, member };
    const labelNames = ['group', 'member'] as const;
    this.term = metrics.gauge({ name: 'concord_raft_term', help: 'Current Raft term of this member.', labelNames });
    this.isLeader = metrics.gauge({ name: 'concord_raft_is_leader', help: '1 while this member leads its group, else 0.', labelNames });
    this.commitIndex = metrics.gauge({ name: 'concord_raft_commit_index', help: 'Highest log index this member knows to be committed.', labelNames });
    this.appliedIndex = metrics.gauge({
      name: 'concord_raft_applied_index',
      help: 'Highest log index this member has applied to its state machine.',
      labelNames,
    });
    this.leaderChanges = metrics.counter({
      name: 'concord_raft_leader_changes_total',
      help: 'Leaders this member has learned of: each new (leader, term) counts once, including itself.',
      labelNames,
    });
    this.proposalSeconds = metrics.hotHistogram({
      name: 'concord_raft_proposal_seconds',
      help: 'Time from propose() on this member to its outcome (applied here, not_leader, dropped, unknown or failed).',
      labelNames: ['group', 'member', 'outcome'],
      buckets: LATENCY_BUCKETS_SECONDS,
    });
    this.appendBatchEntries = metrics.hotHistogram({
      name: 'concord_raft_append_batch_entries',
      help: 'Log entries per batch: kind="persist" per Ready written to the WAL, kind="send" per append message sent to a follower.',
      labelNames: ['group', 'member', 'kind'],
      buckets: BATCH_SIZE_BUCKETS,
    });
    this.fsyncSeconds = metrics.hotHistogram({
      name: 'concord_raft_fsync_seconds',
      help: 'Time to append one Ready (entries and hard state) to the WAL, fsync included when --sync is on.',
      labelNames,
      buckets: LATENCY_BUCKETS_SECONDS,
    });
    this.snapshots = metrics.counter({
      name: 'concord_raft_snapshots_total',
      help: 'Snapshots by kind: taken (written from the local state machine), installed (received from the leader), sent (to a follower).',
      labelNames: ['group', 'member', 'kind'],
    });
    this.transfers = metrics.counter({
      name: 'concord_raft_leadership_transfers_total',
      help: 'Leadership transfers this member was asked to make, by trigger (request: an operator; stop: its own graceful stop) and outcome (transferred, failed, rejected, not_leader).',
      labelNames: ['group', 'member', 'trigger', 'outcome'],
    });
  }

  setGauges(values: RaftGaugeValues): void {
    this.term.set(this.labels, values.term);
    this.isLeader.set(this.labels, values.isLeader ? 1 : 0);
    this.commitIndex.set(this.labels, values.commitIndex);
    this.appliedIndex.set(this.labels, values.appliedIndex);
  }

  leaderChanged(): void {
    this.leaderChanges.inc(this.labels);
  }

  // The histograms below are observed on every proposal and every Ready: their children are
  // kept, so an observation allocates nothing (HotHistogram).

  proposalDone(outcome: ProposalOutcomeLabel, seconds: number): void {
    let child = this.proposalChildren.get(outcome);
    if (child === undefined) {
      child = this.proposalSeconds.child({ ...this.labels, outcome });
      this.proposalChildren.set(outcome, child);
    }
    child.observe(seconds);
  }

  appendBatch(kind: AppendBatchKind, entries: number): void {
    let child = this.appendChildren.get(kind);
    if (child === undefined) {
      child = this.appendBatchEntries.child({ ...this.labels, kind });
      this.appendChildren.set(kind, child);
    }
    child.observe(entries);
  }

  walAppended(seconds: number): void {
    this.fsyncChild ??= this.fsyncSeconds.child(this.labels);
    this.fsyncChild.observe(seconds);
  }

  snapshot(kind: SnapshotKind): void {
    this.snapshots.inc({ ...this.labels, kind });
  }

  leadershipTransfer(trigger: TransferTrigger, outcome: string): void {
    this.transfers.inc({ ...this.labels, trigger, outcome });
  }

  /**
   * Drops this member's gauges once it stops, so a stopped member does not go on reporting itself
   * leader. Counters and histograms stay: they only ever grow, and a restarted member continues them.
   */
  removeGauges(): void {
    for (const gauge of [this.term, this.isLeader, this.commitIndex, this.appliedIndex]) gauge.remove(this.labels);
  }
}
