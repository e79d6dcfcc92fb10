// Durable Raft state on the write-ahead log: term, vote and commit (HardState), the log entries and
// the snapshot. Record encodings are in storage-codec.ts; this file says what they mean.
//
// LAYOUT: `<dir>/wal/` holds the log, `<dir>/snapshot.bin` the latest snapshot (written with
// writeSnapshotAtomic, so it is always whole: either the old one or the new one).
//
// REPLAY, record by record in WAL order:
//   * HARD_STATE — the last one wins.
//   * ENTRIES starting at index i — replaces every stored entry from i on (a follower that repaired
//     its log, Raft §5.3, appended the leader's entries over a divergent suffix). Starting after
//     the last stored index + 1 is a gap: the data is damaged and recovery refuses to go on.
//   * SNAPSHOT_MARKER (index, term) — entries up to index are in the snapshot; entries after it
//     stay only if the stored entry at index has that term (Raft §7), else the log is discarded.
//   * BOOTSTRAP — the membership and addresses a brand-new group started from.
// Then the snapshot file: if it is newer than the last marker (a crash came between writing the
// file and appending its marker), it is applied like a marker at the end, and the missing marker
// is appended so that records written from now on replay after it.
//
// ONE READY, ONE APPEND: the HardState, entries and (received) snapshot marker of one Ready are one
// WAL append, so group commit makes them durable together with one fdatasync.
//
// SNAPSHOTS: the file is written first (atomically), then a marker + the current HardState are
// appended, then whole segments before the one holding the first entry after the snapshot are
// deleted. The HardState goes with the marker because the segments being deleted may hold the last
// HardState record; the bootstrap record they may hold is superseded by the snapshot file, which
// carries membership and addresses.

import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { readSnapshot, writeSnapshotAtomic, WriteAheadLog, type WalPosition, type WalStats } from '@concord/storage';
import type { Entry, HardState, SnapshotMeta } from '../raft/types.js';
import {
  decodeRecord,
  decodeSnapshotPayload,
  encodeBootstrap,
  encodeEntries,
  encodeHardState,
  encodeSnapshotMarker,
  encodeSnapshotPayloadHeader,
  encodeSnapshotPayloadParts,
  type BootstrapRecord,
  type SnapshotPayload,
} from './storage-codec.js';
import { StoredLog, StoredLogGapError } from './stored-log.js';

export interface RaftStorageOptions {
  /** Folder for `wal/` and `snapshot.bin`; created if missing. */
  dir: string;
  /** fsync every append (default true). Off only in tests and benchmarks. */
  sync?: boolean;
  /** WAL segment size (default: the storage package's, 64 MiB). */
  segmentBytes?: number;
  /** Largest WAL record (default: the storage package's, 16 MiB). An entries record holds one Ready's entries. */
  maxRecordBytes?: number;
}

/** What a restart finds on disk. */
export interface RecoveredRaftState {
  hardState: HardState;
  /** The latest snapshot, when there is one: restore the state machine from it. */
  snapshot?: SnapshotPayload;
  /** Stored entries after the snapshot (or from index 1), consecutive. */
  entries: Entry[];
  /** Present until the first snapshot compacts it away: the group's starting membership. */
  bootstrap?: BootstrapRecord;
  /** Bytes of a torn tail write the WAL cut off (never acknowledged). */
  truncatedBytes: number;
}

/** What one Ready asks to persist. */
export interface RaftPersistUpdate {
  hardState?: HardState;
  entries: readonly Entry[];
  /** A snapshot received from the leader; replaces the log up to its index. */
  snapshot?: SnapshotPayload;
}

interface LiveEntry {
  index: number;
  term: number;
  /** WAL segment of the record holding this entry. */
  segment: number;
}

const ZERO_HARD_STATE: HardState = { term: 0, vote: '', commit: 0 };

/**
 * Entries of one Ready are split into records of about this size, so that a Ready carrying many
 * large commands stays under the WAL's record limit (16 MiB by default). They still go in one
 * append, hence one fsync.
 */
const ENTRIES_RECORD_BYTES = 4 * 1024 * 1024;

function splitEntries(entries: readonly Entry[]): Entry[][] {
  const batches: Entry[][] = [];
  let current: Entry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    const size = entry.data.byteLength + 32;
    if (current.length > 0 && bytes + size > ENTRIES_RECORD_BYTES) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(entry);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

export class RaftStorage {
  /** Last HardState written (or queued), rewritten with every snapshot marker. */
  private hardState: HardState;
  private snapshotMeta: SnapshotMeta | undefined;
  /** Index of the snapshot in the file (may be ahead of snapshotMeta until its marker is appended). */
  private fileSnapshotIndex: number;
  /** hardState holds a commit index not written yet (see persist). */
  private hardStateUnwritten = false;
  /** Serializes snapshot file writers: concurrent writers of one path would share its temp file. */
  private fileChain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly wal: WriteAheadLog,
    private readonly snapshotPath: string,
    private log: StoredLog<LiveEntry>,
    hardState: HardState,
    snapshotMeta: SnapshotMeta | undefined,
  ) {
    this.hardState = hardState;
    this.snapshotMeta = snapshotMeta;
    this.fileSnapshotIndex = snapshotMeta?.index ?? 0;
  }

  static async open(options: RaftStorageOptions): Promise<{ storage: RaftStorage; recovered: RecoveredRaftState }> {
    await mkdir(options.dir, { recursive: true });
    const snapshotPath = join(options.dir, 'snapshot.bin');
    const snapshotFile = await readSnapshot(snapshotPath);
    const snapshot = snapshotFile === undefined ? undefined : decodeSnapshotPayload(snapshotFile);

    const opened = await WriteAheadLog.open({
      dir: join(options.dir, 'wal'),
      sync: options.sync ?? true,
      ...(options.segmentBytes !== undefined ? { segmentBytes: options.segmentBytes } : {}),
      ...(options.maxRecordBytes !== undefined ? { maxRecordBytes: options.maxRecordBytes } : {}),
    });
    const wal = opened.wal;
    try {
      let hardState = ZERO_HARD_STATE;
      let marker: SnapshotMeta | undefined;
      let bootstrap: BootstrapRecord | undefined;
      const log = new StoredLog<Entry & { segment: number }>();
      for (const record of opened.records) {
        const decoded = decodeRecord(record.data);
        switch (decoded.kind) {
          case 'hard_state':
            hardState = decoded.hardState;
            break;
          case 'entries':
            log.append(decoded.entries.map((entry) => ({ ...entry, segment: record.position.segment })));
            break;
          case 'snapshot_marker':
            // A marker older than one already seen is a local snapshot whose append lost the race
            // with a received, newer one: it changes nothing.
            if (marker !== undefined && decoded.marker.index <= marker.index) break;
            marker = decoded.marker;
            log.compact(marker.index, marker.term);
            break;
          case 'bootstrap':
            bootstrap = decoded.bootstrap;
            break;
        }
      }

      if (marker !== undefined && (snapshot === undefined || snapshot.meta.index < marker.index)) {
        throw new StoredLogGapError(
          `the WAL records a snapshot at index ${marker.index} but ${snapshotPath} ` +
            (snapshot === undefined ? 'is missing' : `holds index ${snapshot.meta.index}`),
        );
      }
      const markerMissing = snapshot !== undefined && (marker === undefined || marker.index < snapshot.meta.index);
      if (snapshot !== undefined && markerMissing) log.compact(snapshot.meta.index, snapshot.meta.term);

      const expectedFirst = (snapshot?.meta.index ?? 0) + 1;
      if (log.firstIndex !== undefined && log.firstIndex !== expectedFirst) {
        throw new StoredLogGapError(
          snapshot === undefined
            ? `the stored log starts at index ${log.firstIndex} and there is no snapshot`
            : `the stored log starts at index ${log.firstIndex} but the snapshot ends at ${snapshot.meta.index}`,
        );
      }
      if (snapshot !== undefined && hardState.commit < snapshot.meta.index) {
        // A snapshot only ever holds committed entries.
        hardState = { ...hardState, commit: snapshot.meta.index };
      }

      const entries = log.entries.map(({ term, index, type, data }): Entry => ({ term, index, type, data }));
      const storage = new RaftStorage(
        wal,
        snapshotPath,
        log.map(({ index, term, segment }) => ({ index, term, segment })),
        hardState,
        snapshot?.meta,
      );
      if (snapshot !== undefined && markerMissing) {
        // Without the marker, entries appended after a received snapshot would replay as a gap
        // behind the discarded, divergent log.
        await wal.append([encodeSnapshotMarker(snapshot.meta), encodeHardState(hardState)]);
      }
      const recovered: RecoveredRaftState = { hardState, entries, truncatedBytes: opened.truncatedBytes };
      if (snapshot !== undefined) recovered.snapshot = snapshot;
      if (bootstrap !== undefined) recovered.bootstrap = bootstrap;
      return { storage, recovered };
    } catch (error) {
      await wal.close().catch(() => undefined);
      throw error;
    }
  }

  /** Index of the latest snapshot the log has been compacted to (0 when none). */
  get snapshotIndex(): number {
    return this.snapshotMeta?.index ?? 0;
  }

  /** Index of the last durable log entry (the snapshot's index when the log after it is empty). */
  get lastIndex(): number {
    return this.log.lastIndex ?? this.snapshotIndex;
  }

  /** Records the starting membership of a brand-new group. */
  async bootstrap(record: BootstrapRecord): Promise<void> {
    this.assertOpen();
    await this.wal.append([encodeBootstrap(record)]);
  }

  /**
   * Persists one Ready with one WAL append; resolves once it is durable. A received snapshot's
   * file is written first, so that its marker never names a snapshot that is not on disk.
   */
  async persist(update: RaftPersistUpdate): Promise<void> {
    this.assertOpen();
    const records: Buffer[] = [];
    let markerAt = -1;
    if (update.snapshot !== undefined) {
      const written = await this.writeSnapshotFile(update.snapshot);
      if (!written) {
        throw new Error(
          `received snapshot at index ${update.snapshot.meta.index} is not newer than the stored one at ${this.fileSnapshotIndex}`,
        );
      }
      markerAt = records.push(encodeSnapshotMarker(update.snapshot.meta)) - 1;
    }
    // etcd's MustSync: new entries, a snapshot, or a new term or vote must be durable before the
    // acknowledgements and votes that depend on them leave. A hard state that only moves the
    // commit index need not be: a commit index lost in a crash is learned again from the leader
    // (and a snapshot's index counts as committed on restart). Such a hard state is kept in memory
    // and written with the next append (or the next snapshot marker, or on close), like etcd's
    // buffered WAL encoder that reaches the disk only with the next sync; so the many Readies
    // that only commit cost no I/O at all.
    if (update.hardState !== undefined) {
      const mustWrite = update.hardState.term !== this.hardState.term || update.hardState.vote !== this.hardState.vote;
      this.hardState = update.hardState;
      this.hardStateUnwritten = true;
      if (!mustWrite && update.snapshot === undefined && update.entries.length === 0) return;
    }
    if (this.hardStateUnwritten) {
      records.push(encodeHardState(this.hardState));
      this.hardStateUnwritten = false;
    }
    const entryBatches = splitEntries(update.entries);
    const firstEntriesAt = records.length;
    for (const batch of entryBatches) records.push(encodeEntries(batch));
    if (records.length === 0) return;
    const positions = await this.wal.append(records);

    // Mirror the replay rules in memory, in the same order as the records.
    if (update.snapshot !== undefined) {
      this.snapshotMeta = update.snapshot.meta;
      this.log.compact(update.snapshot.meta.index, update.snapshot.meta.term);
    }
    entryBatches.forEach((batch, i) => {
      const segment = positions[firstEntriesAt + i]?.segment;
      if (segment === undefined) throw new Error('the WAL returned fewer positions than records');
      this.log.append(batch.map(({ index, term }) => ({ index, term, segment })));
    });
    const markerPosition = positions[markerAt];
    if (markerPosition !== undefined) await this.dropObsoleteSegments(markerPosition);
  }

  /**
   * Writes the snapshot file (a local snapshot, or a received one as part of persist). Resolves
   * false, writing nothing, when the stored snapshot is already at least as new. Writers are
   * serialized, so a slow older write never lands after a newer one.
   */
  writeSnapshotFile(snapshot: SnapshotPayload): Promise<boolean> {
    this.assertOpen();
    const run = this.fileChain.then(async () => {
      if (snapshot.meta.index <= this.fileSnapshotIndex) return false;
      await writeSnapshotAtomic(this.snapshotPath, encodeSnapshotPayloadParts(snapshot));
      this.fileSnapshotIndex = snapshot.meta.index;
      return true;
    });
    this.fileChain = run.catch(() => undefined);
    return run;
  }

  /**
   * writeSnapshotFile for a state machine's bytes produced as they are written
   * (StateMachine.snapshotChunks): resolves to the number of those bytes, or undefined, writing
   * nothing, when the stored snapshot is already at least as new.
   */
  writeSnapshotFileFrom(meta: SnapshotMeta, addresses: SnapshotPayload['addresses'], stateMachineData: AsyncIterable<Uint8Array>): Promise<number | undefined> {
    this.assertOpen();
    const run = this.fileChain.then(async () => {
      if (meta.index <= this.fileSnapshotIndex) return undefined;
      const header = encodeSnapshotPayloadHeader(meta, addresses);
      async function* payload(): AsyncGenerator<Uint8Array> {
        yield header;
        yield* stateMachineData;
      }
      const written = await writeSnapshotAtomic(this.snapshotPath, payload());
      this.fileSnapshotIndex = meta.index;
      return written - header.length;
    });
    this.fileChain = run.catch(() => undefined);
    return run;
  }

  /**
   * After writeSnapshotFile of a local snapshot: appends its marker (with the current HardState)
   * and deletes the WAL segments it makes obsolete. Resolves false, doing nothing, when a newer
   * snapshot is already recorded (one received from the leader meanwhile).
   */
  async recordSnapshot(meta: SnapshotMeta): Promise<boolean> {
    this.assertOpen();
    if (meta.index <= this.snapshotIndex) return false;
    if (meta.index > this.fileSnapshotIndex) throw new Error(`snapshot ${meta.index} is recorded before its file was written`);
    this.hardStateUnwritten = false;
    const [markerPosition] = await this.wal.append([encodeSnapshotMarker(meta), encodeHardState(this.hardState)]);
    if (meta.index <= this.snapshotIndex) return false;
    this.snapshotMeta = meta;
    this.log.compact(meta.index, meta.term);
    if (markerPosition !== undefined) await this.dropObsoleteSegments(markerPosition);
    return true;
  }

  /** The stored snapshot file's payload (what InstallSnapshot streams), or undefined when none. */
  async readSnapshotFile(): Promise<Buffer | undefined> {
    // Queued behind writers, so the file read is never one being replaced mid-way by this process.
    const run = this.fileChain.then(() => readSnapshot(this.snapshotPath));
    this.fileChain = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fileChain;
    if (this.hardStateUnwritten) {
      // A clean stop keeps the latest commit index, so a restart replays no further than needed.
      this.hardStateUnwritten = false;
      await this.wal.append([encodeHardState(this.hardState)]);
    }
    await this.wal.close();
  }

  /** The WAL's counters (segments, group-commit batches), for tests and metrics. */
  walStats(): WalStats {
    return this.wal.stats();
  }

  /** Deletes segments holding only records a snapshot superseded (see SNAPSHOTS above). */
  private async dropObsoleteSegments(markerPosition: WalPosition): Promise<void> {
    const firstLive = this.log.entries[0];
    const keepFrom = Math.min(markerPosition.segment, firstLive?.segment ?? markerPosition.segment);
    await this.wal.dropSegmentsBefore({ segment: keepFrom, offset: 0 });
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('Raft storage is closed');
  }
}
