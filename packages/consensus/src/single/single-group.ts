// The `single` engine: one replica, durability from the write-ahead log alone. It exists for local
// development and tests, and as the reference the replicated engines must behave like. A command is
// acknowledged only after its log record is fsync'd and it has been applied, so a crash (kill -9)
// never loses an acknowledged write: recovery loads the latest snapshot and replays the log after it.

import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { readSnapshot, writeSnapshotAtomic, WriteAheadLog, type WalPosition } from '@concord/storage';
import type {
  ConsensusGroup,
  ConsensusStatus,
  MembershipOutcome,
  TransferOutcome,
  ProposeOutcome,
  ReadBarrierOutcome,
  StateMachine,
} from '../types.js';
import { decodeLogRecord, decodeSnapshotFile, encodeLogRecord, encodeSnapshotFile } from './codec.js';

/** Take a snapshot (and drop log segments behind it) after this many applied entries. */
export const DEFAULT_SNAPSHOT_EVERY = 10_000;

export interface SingleGroupOptions<Result> {
  memberId: string;
  /** host:port this replica serves on, reported as the leader address. */
  address: string;
  /** Folder for the log (`wal/`) and the snapshot (`snapshot.bin`). */
  dataDir: string;
  stateMachine: StateMachine<Result>;
  /** fsync every log append before acknowledging (default true). */
  sync?: boolean;
  /** See DEFAULT_SNAPSHOT_EVERY. */
  snapshotEvery?: number;
  /** WAL segment size in bytes (default: the storage package's). */
  segmentBytes?: number;
}

interface PendingEntry<Result> {
  index: number;
  command: Uint8Array;
  durable: boolean;
  position?: WalPosition;
  resolve: (outcome: ProposeOutcome<Result>) => void;
  reject: (error: unknown) => void;
}

export class SingleGroup<Result> implements ConsensusGroup<Result> {
  readonly engine = 'single' as const;
  private wal: WriteAheadLog | undefined;
  private lastIndex = 0;
  private appliedIndex = 0;
  private snapshotIndex = 0;
  /** Entries appended but not yet applied, in index order. */
  private readonly pending: PendingEntry<Result>[] = [];
  /** WAL position of recent entries, to know which segments a snapshot makes obsolete. */
  private readonly positions = new Map<number, WalPosition>();
  /** Tail of the queue of snapshot writes (see snapshotNow). */
  private snapshotChain: Promise<void> = Promise.resolve();
  private autoSnapshotPending = false;
  private failure: unknown;
  private stopped = false;
  private readonly snapshotEvery: number;
  private readonly snapshotPath: string;

  constructor(private readonly options: SingleGroupOptions<Result>) {
    this.snapshotEvery = options.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY;
    if (!Number.isInteger(this.snapshotEvery) || this.snapshotEvery < 1) {
      throw new Error(`snapshotEvery: must be a positive integer (got ${String(options.snapshotEvery)})`);
    }
    this.snapshotPath = join(options.dataDir, 'snapshot.bin');
  }

  async start(): Promise<void> {
    await mkdir(this.options.dataDir, { recursive: true });
    const snapshotFile = await readSnapshot(this.snapshotPath);
    if (snapshotFile) {
      const { lastIndex, state } = decodeSnapshotFile(snapshotFile);
      this.options.stateMachine.restore(state);
      this.snapshotIndex = lastIndex;
      this.appliedIndex = lastIndex;
      this.lastIndex = lastIndex;
    }
    const opened = await WriteAheadLog.open({
      dir: join(this.options.dataDir, 'wal'),
      sync: this.options.sync ?? true,
      ...(this.options.segmentBytes !== undefined ? { segmentBytes: this.options.segmentBytes } : {}),
    });
    this.wal = opened.wal;
    for (const record of opened.records) {
      const { index, command } = decodeLogRecord(record.data);
      if (index <= this.snapshotIndex) continue;
      if (index !== this.lastIndex + 1) {
        throw new Error(
          `log gap in ${this.options.dataDir}: expected entry ${this.lastIndex + 1}, found ${index}; restore from a backup`,
        );
      }
      this.options.stateMachine.apply(command, index);
      this.positions.set(index, record.position);
      this.lastIndex = index;
      this.appliedIndex = index;
    }
  }

  propose(command: Uint8Array): Promise<ProposeOutcome<Result>> {
    if (this.stopped) return Promise.resolve({ kind: 'dropped', reason: 'group is stopped' });
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const wal = this.requireStarted();
    // Indexes are assigned synchronously, in call order; the WAL preserves that order on disk and
    // batches concurrent appends into one fsync (group commit).
    const index = ++this.lastIndex;
    return new Promise<ProposeOutcome<Result>>((resolve, reject) => {
      const entry: PendingEntry<Result> = { index, command, durable: false, resolve, reject };
      this.pending.push(entry);
      wal.append([encodeLogRecord(index, command)]).then(
        ([position]) => {
          entry.durable = true;
          if (position) entry.position = position;
          this.applyDurablePrefix();
        },
        (error: unknown) => this.fail(error),
      );
    });
  }

  /** Applies, in index order, every pending entry whose record (and all before it) is durable. */
  private applyDurablePrefix(): void {
    while (this.pending.length > 0 && this.pending[0]!.durable) {
      const entry = this.pending.shift()!;
      const result = this.options.stateMachine.apply(entry.command, entry.index);
      this.appliedIndex = entry.index;
      if (entry.position) this.positions.set(entry.index, entry.position);
      entry.resolve({ kind: 'applied', index: entry.index, result });
    }
    if (this.appliedIndex - this.snapshotIndex >= this.snapshotEvery && !this.autoSnapshotPending) {
      this.autoSnapshotPending = true;
      this.snapshotNow()
        .catch((error: unknown) => this.fail(error))
        .finally(() => {
          this.autoSnapshotPending = false;
        });
    }
  }

  /** A failed fsync leaves the on-disk state unknown: stop accepting work rather than guess. */
  private fail(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    for (const entry of this.pending.splice(0)) entry.reject(error);
  }

  readBarrier(): Promise<ReadBarrierOutcome> {
    // Every acknowledged write was applied before it was acknowledged, and this replica is the only
    // one, so local state already reflects every write a client could have seen acknowledged.
    this.requireStarted();
    return Promise.resolve({ kind: 'ready', index: this.appliedIndex });
  }

  changeMembership(): Promise<MembershipOutcome> {
    return Promise.resolve({ kind: 'rejected', reason: 'the single engine has exactly one member; use raft to change membership' });
  }

  handOffLeadership(): Promise<TransferOutcome | undefined> {
    return Promise.resolve(undefined);
  }

  transferLeadership(): Promise<TransferOutcome> {
    return Promise.resolve({ kind: 'rejected', reason: 'the single engine has exactly one member, which always leads; use raft to move leadership' });
  }

  /**
   * Snapshots run one after another: concurrent writers of one snapshot path would share its temp
   * file, and a later snapshot renamed before an earlier one could leave an older state on disk
   * than the log segments it already compacted.
   */
  snapshotNow(): Promise<void> {
    const run = this.snapshotChain.then(() => this.writeSnapshot());
    // The chain itself must not stay rejected, or every later snapshot would fail too.
    this.snapshotChain = run.catch(() => undefined);
    return run;
  }

  private async writeSnapshot(): Promise<void> {
    const wal = this.requireStarted();
    const index = this.appliedIndex;
    if (index === this.snapshotIndex) return;
    const state = this.options.stateMachine.snapshot();
    await writeSnapshotAtomic(this.snapshotPath, encodeSnapshotFile(index, state));
    this.snapshotIndex = Math.max(this.snapshotIndex, index);
    // Segments holding only entries <= index are now redundant. The segment that holds entry
    // `index` may also hold later entries, so it stays.
    const position = this.positions.get(index);
    for (const i of [...this.positions.keys()]) if (i < index) this.positions.delete(i);
    if (position) await wal.dropSegmentsBefore(position);
  }

  status(): ConsensusStatus {
    return {
      engine: 'single',
      memberId: this.options.memberId,
      role: 'leader',
      term: 0,
      commitIndex: this.appliedIndex,
      appliedIndex: this.appliedIndex,
      snapshotIndex: this.snapshotIndex,
      leaderId: this.options.memberId,
      leaderAddress: this.options.address,
      members: [{ memberId: this.options.memberId, address: this.options.address, voter: true }],
    };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Let in-flight appends finish so their proposers get an answer, then close the log.
    await this.snapshotChain;
    await this.wal?.close();
    for (const entry of this.pending.splice(0)) entry.resolve({ kind: 'dropped', reason: 'group stopped' });
  }

  private requireStarted(): WriteAheadLog {
    if (!this.wal) throw new Error('consensus group used before start()');
    return this.wal;
  }
}
