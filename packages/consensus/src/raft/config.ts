// Options of the Raft core beyond RaftConfig, and their validation. Every number that matters is
// named here; a bad value throws at construction with a message naming the setting.
import type { RaftConfig } from './types.js';

/**
 * How the leader serves ReadIndex requests.
 * - 'safe' (default): thesis §6.4 — record the commit index, confirm leadership with a heartbeat
 *   round acknowledged by a majority, then answer. Correct under any clock behaviour.
 * - 'lease_based': thesis §6.4.1 — while the leader holds a lease it answers at once, without a
 *   heartbeat round. Requires checkQuorum (see RaftCoreOptions.leaseSafetyMarginTicks for the bound).
 */
export type ReadOnlyMode = 'safe' | 'lease_based';

export interface RaftCoreOptions extends RaftConfig {
  /** Default 'safe'. */
  readOnlyMode?: ReadOnlyMode;
  /**
   * Leader lease (lease_based only). A follower that hears from the leader ignores votes for the
   * next electionTicks of *its* ticks (leader stickiness, which checkQuorum enables), so no other
   * leader can be elected until then. The leader counts its lease from the moment it SENT the newest
   * heartbeat that a majority acknowledged — a lower bound on when they received it — and trusts it
   * for electionTicks − leaseSafetyMarginTicks of its own ticks. The margin must cover
   *   - tick granularity: a follower's first tick may come right after it heard the heartbeat (1 tick);
   *   - clock drift: if tick rates of any two nodes differ by at most a factor (1 + ρ), the margin
   *     must be at least ρ · electionTicks more.
   * Default: max(1, ceil(electionTicks / 5)), i.e. it tolerates about 20% drift minus one tick.
   * Paused processes (GC, VM migration) are drift too: use 'safe' where they cannot be bounded.
   */
  leaseSafetyMarginTicks?: number;
  /**
   * The most bytes of entries a leader keeps proposed but not committed (etcd-io/raft's
   * MaxUncommittedEntriesSize). Past it, proposals are dropped (nothing is appended; the caller may
   * retry) until commits catch up, so a leader whose followers cannot keep up does not grow its
   * log, and the memory holding it, without bound. A proposal is always accepted when nothing is
   * uncommitted, however large. Counts the entries this leader appended in its term. 0: no limit.
   * Default DEFAULT_MAX_UNCOMMITTED_BYTES.
   */
  maxUncommittedBytes?: number;
  /**
   * How followers learn that the commit index moved. false (etcd-io/raft's way, the default here):
   * the leader sends every follower an append at once, empty if it has nothing new, which each
   * acknowledges. true: followers that need entries get them with the new commit index as usual,
   * and the others learn it from the next append or heartbeat (within heartbeatTicks). Safety does not
   * depend on when a follower learns of a commit, only when it applies; what moves is how soon a
   * follower applies, at most one heartbeat later, for two messages less per member per commit
   * (the Concord driver sets true: at one write in flight that was 9% of the leader's CPU per put).
   */
  piggybackCommit?: boolean;
}

/**
 * 64 MiB: a full replication window to one follower with the driver's defaults (64 appends in flight
 * of at most 1 MiB each). A leader further ahead of its commit index than that is overloaded.
 */
export const DEFAULT_MAX_UNCOMMITTED_BYTES = 64 * 1024 * 1024;

export interface NormalizedOptions extends RaftConfig {
  readOnlyMode: ReadOnlyMode;
  leaseSafetyMarginTicks: number;
  maxUncommittedBytes: number;
  piggybackCommit: boolean;
}

function positiveInteger(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`raft config: ${name} must be a positive integer, got ${String(value)}`);
  }
}

export function normalizeOptions(options: RaftCoreOptions): NormalizedOptions {
  if (typeof options.id !== 'string' || options.id === '') throw new Error('raft config: id must be a non-empty string');
  positiveInteger(options.electionTicks, 'electionTicks');
  positiveInteger(options.heartbeatTicks, 'heartbeatTicks');
  if (options.heartbeatTicks >= options.electionTicks) {
    throw new Error(
      `raft config: heartbeatTicks (${options.heartbeatTicks}) must be less than electionTicks (${options.electionTicks})`,
    );
  }
  positiveInteger(options.maxAppendEntries, 'maxAppendEntries');
  positiveInteger(options.maxAppendBytes, 'maxAppendBytes');
  positiveInteger(options.maxInflightAppends, 'maxInflightAppends');
  if (typeof options.random !== 'function') throw new Error('raft config: random must be a function returning [0, 1)');
  const readOnlyMode = options.readOnlyMode ?? 'safe';
  if (readOnlyMode !== 'safe' && readOnlyMode !== 'lease_based') {
    throw new Error(`raft config: readOnlyMode must be 'safe' or 'lease_based', got ${String(readOnlyMode)}`);
  }
  if (readOnlyMode === 'lease_based' && !options.checkQuorum) {
    throw new Error("raft config: readOnlyMode 'lease_based' requires checkQuorum (leader stickiness is what makes the lease hold)");
  }
  const leaseSafetyMarginTicks = options.leaseSafetyMarginTicks ?? Math.max(1, Math.ceil(options.electionTicks / 5));
  positiveInteger(leaseSafetyMarginTicks, 'leaseSafetyMarginTicks');
  if (leaseSafetyMarginTicks >= options.electionTicks) {
    throw new Error(
      `raft config: leaseSafetyMarginTicks (${leaseSafetyMarginTicks}) must be less than electionTicks (${options.electionTicks})`,
    );
  }
  const maxUncommittedBytes = options.maxUncommittedBytes ?? DEFAULT_MAX_UNCOMMITTED_BYTES;
  if (!Number.isSafeInteger(maxUncommittedBytes) || maxUncommittedBytes < 0) {
    throw new Error(`raft config: maxUncommittedBytes must be an integer ≥ 0 (0: no limit), got ${String(maxUncommittedBytes)}`);
  }
  const piggybackCommit = options.piggybackCommit ?? false;
  if (typeof piggybackCommit !== 'boolean') throw new Error(`raft config: piggybackCommit must be a boolean, got ${String(piggybackCommit)}`);
  return { ...options, readOnlyMode, leaseSafetyMarginTicks, maxUncommittedBytes, piggybackCommit };
}
