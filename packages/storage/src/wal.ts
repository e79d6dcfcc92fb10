// Concord's segmented write-ahead log.
//
// ON-DISK FORMAT, version 1
// -------------------------
// A log is a folder of segment files named `<n>.wal`, where n is the segment number written as 16
// decimal digits, zero-padded. Numbers are consecutive; the first need not be 0, because segments
// that a snapshot covers are deleted from the front. All integers are little-endian. CRC-32 is the
// IEEE 802.3 checksum that zlib, gzip and PNG compute (polynomial 0x04C11DB7, reflected, initial
// value and final XOR 0xFFFFFFFF).
//
//   segment = header, then zero or more records
//   header  = 28 bytes:
//               0  magic          8 bytes, ASCII "CONCWAL" followed by one 0x00 byte
//               8  version        u32, 1
//              12  salt           u32, random, chosen when the segment is created
//              16  segment number u64, equal to the number in the file name
//              24  header CRC     u32, CRC-32 of bytes 0..23
//   record  = length u32 | crc u32 | payload (length bytes)
//               crc = CRC-32 of (salt u32 ‖ length u32 ‖ payload)
//
// A record never spans two segments. A record's position is its segment number and the byte offset
// of its length field in that file. The last segment may end in zero bytes, space written ahead of
// the records (see PREALLOCATION); a sealed segment ends with its last record.
//
// Why the salt is part of every record checksum: zero-filled space never validates as a record
// (the salt is redrawn in the rare case where an empty record would checksum to 0), and neither
// does a record copied from another segment or WAL bytes that a payload happens to contain. That
// keeps the torn-tail test below honest. Including the length means a damaged length field fails
// the checksum like damaged payload does.
//
// WRITING
// -------
// append() calls queue up. A single writer takes everything queued, writes it with one write() per
// segment touched, made durable (group commit), then resolves every call in the batch. With sync on,
// segment files are opened with O_DSYNC where the platform has it, so that a batch is one durable
// write: one trip to the thread pool, not a write and then an fdatasync, each of which would wait its
// turn on a busy event loop before the next could start (elsewhere, write() then fdatasync()). Calls
// that arrive while a write + fdatasync is in flight share the next one, so N concurrent appends
// cost far fewer than N syncs. A segment is closed once the next record would take it past
// segmentBytes (a record larger than segmentBytes gets a segment of its own). Closing a segment
// ("sealing") fdatasyncs it before the next segment exists, even with sync off. A new segment's
// header is written to `<n>.wal.tmp`, synced, renamed into place, and the folder synced, so a
// segment file never has a partial header.
//
// PREALLOCATION. An append that grows the file changes its size, so its fdatasync must also commit
// the file system's journal; three replicas syncing on one disk then queue behind each other's
// journal commits (on ext4, 3 writers appending 7 KB each: 0.47 ms per fdatasync, against 0.13 ms
// when overwriting blocks already written). So the active segment is extended with zeros
// preallocateBytes at a time, in the same durable write as the batch that reaches its end, and
// batches then overwrite space that is already allocated and sized: their fdatasync flushes data
// only. etcd preallocates its segments with fallocate for the same reason; written zeros also avoid
// the unwritten-extent conversion fallocate leaves to the first write. A segment is truncated to
// its last record when it is sealed and when the log is closed.
//
// After a failed write or fdatasync the log refuses all further appends. What the kernel did with
// the dirty pages after a failed fsync is unknown (PostgreSQL's "fsyncgate"), so retrying could
// acknowledge data that is not on disk; reopening the log re-validates everything instead.
//
// RECOVERY (open)
// ---------------
// Writes only ever go to the end of the last segment, and everything before the last completed
// fdatasync is durable (fdatasync covers all earlier writes to the file; sealed segments were
// synced whole). A crash can therefore only damage bytes after the last sync of the last segment:
// a torn tail. The rule:
//
//   * In the last segment, take the first offset p that does not hold a valid record (incomplete
//     record header, length running past the end of the file, or checksum mismatch). If no valid
//     record starts at ANY byte offset after p, the bytes from p on are a torn tail: a record cut
//     short, a tail of garbage or zeros. They were never acknowledged; appends continue from p. A
//     tail of zeros only is kept as preallocated space; any other tail is truncated to p (reported
//     as truncatedBytes).
//   * If a valid record does start after p, the damage is not the end of what was written: it is
//     bit rot, a misdirected write or an edited file, and the records around it may have been
//     acknowledged. That is corruption.
//   * Any damage in an earlier segment, a bad segment header, or a missing segment number between
//     the first and the last is corruption too.
//
// Corruption throws WalCorruptionError naming the file and offset. The log is never "repaired" by
// dropping data past the damage: a consensus member that silently forgets entries or votes it has
// acknowledged can break the safety of its whole group. The node must be restored from a replica
// or a backup. One consequence: with sync off, or if a disk persisted the pages of one unsynced
// write out of order and left a hole, a crash can leave damage followed by valid (unacknowledged)
// records; that too is reported as corruption. The rule errs towards refusing to start, never
// towards losing acknowledged data.

import { constants } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { lockDirectory } from './dir-lock.js';
import { fsyncDirectory, hasErrorCode, writeFully } from './fs-durability.js';
import {
  FRAME_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
  SEGMENT_TEMP_SUFFIX,
  encodeFrameHeader,
  encodeSegmentHeader,
  newSegmentSalt,
  parseSegmentFileName,
  scanSegment,
  segmentFileName,
  type FormatProblem,
} from './wal-format.js';

export interface WalOptions {
  /** Folder holding the segment files; created if missing. */
  dir: string;
  /** A segment is closed and a new one started once it reaches this size. Default 64 MiB. */
  segmentBytes?: number;
  /** fsync every append batch before resolving (default true). Off only in tests/benchmarks. */
  sync?: boolean;
  /** Records larger than this are refused (default 16 MiB). */
  maxRecordBytes?: number;
  /**
   * The active segment is extended with zeros this many bytes at a time (default 1 MiB, never past
   * segmentBytes), so that most batches' fdatasync need not commit a size change; 0 turns it off.
   */
  preallocateBytes?: number;
}

/** Where a record lives: the segment's sequence number and the record's byte offset in it. */
export interface WalPosition {
  segment: number;
  offset: number;
}

export interface WalRecord {
  data: Buffer;
  position: WalPosition;
}

export interface WalOpenResult {
  wal: WriteAheadLog;
  /** Every complete record, in append order. */
  records: WalRecord[];
  /**
   * Bytes cut from the tail of the last segment because its last record was torn (0 when clean). A
   * tail of zeros only is preallocated space, not counted.
   */
  truncatedBytes: number;
}

/** Counters since open() returned, for tests, metrics and benchmarks. */
export interface WalStats {
  /** The segment appends currently go to. */
  activeSegment: number;
  /** Segment files in the log, the active one included. */
  segmentCount: number;
  /** Group-commit batches written: each is one write per segment touched and at most one batch sync. */
  batches: number;
  /** Records appended. */
  records: number;
  /**
   * Durable writes and fdatasync calls on segment files: one per batch when sync is on, plus seals
   * and new headers.
   */
  syncs: number;
}

export class WalCorruptionError extends Error {
  constructor(
    message: string,
    readonly segmentFile: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'WalCorruptionError';
  }
}

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;
export const DEFAULT_PREALLOCATE_BYTES = 1024 * 1024;
/**
 * Ceiling for segmentBytes and maxRecordBytes. open() reads a segment into one Buffer and Node
 * reads at most 2 GiB at once; a segment is at most max(segmentBytes, one record plus headers).
 */
const SIZE_SETTING_MAX = 1024 * 1024 * 1024;
/** The smallest useful segment: a header and one empty record. */
const SEGMENT_BYTES_MIN = SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES;
/** O_DSYNC, where the platform has it (not on Windows): every write is durable when it returns. */
const O_DSYNC: number | undefined = (constants as { O_DSYNC?: number }).O_DSYNC;

/** open() flags of a segment file that appends go to. */
function segmentOpenFlags(base: number, sync: boolean): number {
  return sync && O_DSYNC !== undefined ? base | O_DSYNC : base;
}

interface WalConfig {
  dir: string;
  segmentBytes: number;
  sync: boolean;
  maxRecordBytes: number;
  preallocateBytes: number;
}

function compileWalOptions(options: WalOptions): WalConfig {
  if (typeof options.dir !== 'string' || options.dir === '') {
    throw new TypeError('WalOptions.dir must be a non-empty path');
  }
  const sizeSetting = (name: string, value: number | undefined, fallback: number, min: number): number => {
    const chosen = value ?? fallback;
    if (!Number.isSafeInteger(chosen) || chosen < min || chosen > SIZE_SETTING_MAX) {
      throw new RangeError(`WalOptions.${name} must be an integer from ${min} to ${SIZE_SETTING_MAX} bytes (got ${chosen})`);
    }
    return chosen;
  };
  if (options.sync !== undefined && typeof options.sync !== 'boolean') {
    throw new TypeError(`WalOptions.sync must be a boolean (got ${String(options.sync)})`);
  }
  return {
    dir: options.dir,
    segmentBytes: sizeSetting('segmentBytes', options.segmentBytes, DEFAULT_SEGMENT_BYTES, SEGMENT_BYTES_MIN),
    maxRecordBytes: sizeSetting('maxRecordBytes', options.maxRecordBytes, DEFAULT_MAX_RECORD_BYTES, 0),
    preallocateBytes: sizeSetting('preallocateBytes', options.preallocateBytes, DEFAULT_PREALLOCATE_BYTES, 0),
    sync: options.sync ?? true,
  };
}

/** The segment appends go to. */
interface ActiveSegment {
  segment: number;
  path: string;
  handle: FileHandle;
  salt: number;
  /** Bytes in the file that hold the header and valid records; the next record goes here. */
  size: number;
  /** The file's length: size plus preallocated zeros. */
  allocated: number;
}

interface PendingAppend {
  records: Buffer[];
  resolve: (positions: WalPosition[]) => void;
  reject: (error: Error) => void;
}

function corruptionError(path: string, problem: FormatProblem): WalCorruptionError {
  return new WalCorruptionError(
    `WAL segment ${path} is corrupt at offset ${problem.offset}: ${problem.reason}. The log is corrupt ` +
      `and cannot be repaired without losing acknowledged data; restore this node's data from a replica or a backup.`,
    path,
    problem.offset,
  );
}

/** Creates the folder and makes every newly created level of it durable in its parent. */
async function ensureDirectory(dir: string): Promise<void> {
  const firstCreated = await mkdir(dir, { recursive: true });
  if (firstCreated === undefined) return;
  const top = resolve(firstCreated);
  for (let child = resolve(dir); ; child = dirname(child)) {
    const parent = dirname(child);
    await fsyncDirectory(parent);
    if (child === top || parent === child) return;
  }
}

/** Creates segment `segment` with a durable header; see WRITING at the top of this file. */
async function createSegment(dir: string, segment: number, sync: boolean): Promise<ActiveSegment> {
  if (!Number.isSafeInteger(segment)) throw new RangeError(`WAL segment number ${segment} is out of range`);
  const path = join(dir, segmentFileName(segment));
  const tempPath = path + SEGMENT_TEMP_SUFFIX;
  const salt = newSegmentSalt();
  const handle = await open(tempPath, segmentOpenFlags(constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, sync));
  try {
    await writeFully(handle, encodeSegmentHeader({ segment, salt }), 0);
    await handle.datasync();
    await rename(tempPath, path);
    await fsyncDirectory(dir);
  } catch (error) {
    await handle.close();
    throw error;
  }
  return { segment, path, handle, salt, size: SEGMENT_HEADER_BYTES, allocated: SEGMENT_HEADER_BYTES };
}

export class WriteAheadLog {
  private readonly queue: PendingAppend[] = [];
  /** Releases the folder's LOCK (dir-lock.ts); set by open(). */
  private unlock: () => Promise<void> = async () => undefined;
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  private signalDrained: () => void = () => undefined;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private closing: Promise<void> | undefined;
  /** Set by the first failed write or sync; every later append rejects with it. */
  private failure: Error | undefined;
  /** Serializes dropSegmentsBefore calls; never rejects. */
  private dropping: Promise<unknown> = Promise.resolve();
  private readonly counters = { batches: 0, records: 0, syncs: 0 };

  private constructor(
    private readonly config: WalConfig,
    private active: ActiveSegment,
    /** Segment numbers on disk, ascending and consecutive; the last is the active one. */
    private readonly segments: number[],
  ) {}

  /** Opens (or creates) the log in options.dir and recovers it. */
  static async open(options: WalOptions): Promise<WalOpenResult> {
    const config = compileWalOptions(options);
    await ensureDirectory(config.dir);
    const unlock = await lockDirectory(config.dir);
    try {
      const opened = await WriteAheadLog.openLocked(config);
      opened.wal.unlock = unlock;
      return opened;
    } catch (error) {
      await unlock();
      throw error;
    }
  }

  private static async openLocked(config: WalConfig): Promise<WalOpenResult> {

    const names = await readdir(config.dir);
    const segments: number[] = [];
    for (const name of names) {
      const segment = parseSegmentFileName(name);
      if (segment !== undefined) {
        segments.push(segment);
        continue;
      }
      const isSegmentTemp =
        name.endsWith(SEGMENT_TEMP_SUFFIX) && parseSegmentFileName(name.slice(0, -SEGMENT_TEMP_SUFFIX.length)) !== undefined;
      if (isSegmentTemp) {
        // A segment whose creation a crash interrupted before the rename: it never held records.
        await unlink(join(config.dir, name));
      }
    }
    segments.sort((a, b) => a - b);

    if (segments.length === 0) {
      const active = await createSegment(config.dir, 0, config.sync);
      return { wal: new WriteAheadLog(config, active, [0]), records: [], truncatedBytes: 0 };
    }
    for (let i = 1; i < segments.length; i++) {
      const previous = segments[i - 1] ?? 0;
      if (segments[i] !== previous + 1) {
        throw corruptionError(join(config.dir, segmentFileName(previous + 1)), {
          offset: 0,
          reason: `segment ${previous + 1} is missing between ${previous} and ${segments[i]}`,
        });
      }
    }

    const records: WalRecord[] = [];
    const collect = (segment: number, scanned: { offset: number; data: Buffer }[]): void => {
      // Copies, so that keeping one record does not keep its whole segment's read buffer alive.
      for (const { offset, data } of scanned) records.push({ data: Buffer.from(data), position: { segment, offset } });
    };

    const lastSegment = segments[segments.length - 1] ?? 0;
    for (const segment of segments.slice(0, -1)) {
      const path = join(config.dir, segmentFileName(segment));
      const scan = scanSegment(await readFile(path), segment, false);
      if (scan.kind !== 'clean') throw corruptionError(path, scan.problem);
      collect(segment, scan.records);
    }

    const path = join(config.dir, segmentFileName(lastSegment));
    const handle = await open(path, segmentOpenFlags(constants.O_RDWR, config.sync));
    try {
      const bytes = await handle.readFile();
      const scan = scanSegment(bytes, lastSegment, true);
      if (scan.kind === 'corrupt') throw corruptionError(path, scan.problem);
      collect(lastSegment, scan.records);
      let size = bytes.length;
      let allocated = bytes.length;
      let truncatedBytes = 0;
      if (scan.kind === 'torn') {
        size = scan.validEnd;
        if (!isAllZero(bytes, scan.validEnd)) {
          // Make the cut durable now: otherwise a crash before the next sync could bring the torn
          // bytes back behind records appended after them.
          await handle.truncate(scan.validEnd);
          await handle.datasync();
          allocated = scan.validEnd;
          truncatedBytes = bytes.length - scan.validEnd;
        }
      }
      const active: ActiveSegment = { segment: lastSegment, path, handle, salt: scan.header.salt, size, allocated };
      return { wal: new WriteAheadLog(config, active, segments), records, truncatedBytes };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /**
   * Appends records; resolves once they are durable (fsync'd when sync is on). Concurrent calls
   * share one write + fsync (group commit). Resolves with each record's position, in order.
   *
   * The buffers are read when the batch is written, not when append() is called: do not modify
   * them until the returned promise settles. An empty array resolves at once with no positions.
   *
   * A rejection for an oversized record or a closed log writes nothing. A rejection for an I/O
   * error leaves the log refusing every later append (see WRITING at the top of this file); some
   * of the rejected records may still be found when the log is reopened.
   */
  async append(records: Buffer[]): Promise<WalPosition[]> {
    this.assertWritable();
    if (!Array.isArray(records)) throw new TypeError('WriteAheadLog.append takes an array of Buffers');
    records.forEach((record, index) => {
      if (!(record instanceof Uint8Array)) throw new TypeError(`WAL record ${index} is not a Buffer`);
      if (record.length > this.config.maxRecordBytes) {
        throw new RangeError(
          `WAL record ${index} is ${record.length} bytes, over the maxRecordBytes limit of ${this.config.maxRecordBytes}; ` +
            `split it or raise WalOptions.maxRecordBytes`,
        );
      }
    });
    if (records.length === 0) return [];
    return new Promise((resolvePositions, reject) => {
      this.queue.push({ records, resolve: resolvePositions, reject });
      this.startDrain();
    });
  }

  /** Deletes whole segments that end before `position`'s segment. Returns how many were removed. */
  async dropSegmentsBefore(position: WalPosition): Promise<number> {
    this.assertOpen();
    if (!Number.isSafeInteger(position.segment) || position.segment < 0) {
      throw new RangeError(`dropSegmentsBefore needs a non-negative integer segment (got ${position.segment})`);
    }
    const run = this.dropping.then(() => this.dropSegments(position.segment));
    this.dropping = run.catch(() => undefined);
    return run;
  }

  /** Flushes pending appends and closes the file. */
  async close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  stats(): WalStats {
    return {
      activeSegment: this.active.segment,
      segmentCount: this.segments.length,
      ...this.counters,
    };
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new Error('the WAL is closed; open it again to use it');
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.failure !== undefined) throw this.failure;
  }

  private startDrain(): void {
    if (this.draining) return;
    this.draining = true;
    this.drained = new Promise((resolveDrained) => {
      this.signalDrained = resolveDrained;
    });
    void this.drain();
  }

  /** The single writer. Never rejects: failures are delivered to the appends they concern. */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      if (this.failure !== undefined) {
        for (const pending of batch) pending.reject(this.failure);
        continue;
      }
      try {
        const positions = await this.writeBatch(batch);
        batch.forEach((pending, index) => pending.resolve(positions[index] ?? []));
      } catch (error) {
        const detail = error instanceof Error ? error.message : String(error);
        this.failure = new Error(`WAL write failed, so the log accepts no more appends; reopen it to recover (${detail})`, {
          cause: error,
        });
        for (const pending of batch) pending.reject(this.failure);
      }
    }
    // No await between the empty-queue check and this line, so an append cannot slip in unseen.
    this.draining = false;
    this.signalDrained();
  }

  /** Writes one group-commit batch and syncs it; returns each append's positions. */
  private async writeBatch(batch: PendingAppend[]): Promise<WalPosition[][]> {
    const positions: WalPosition[][] = [];
    let chunks: Buffer[] = [];
    let chunkBytes = 0;
    for (const pending of batch) {
      const appendPositions: WalPosition[] = [];
      for (const record of pending.records) {
        const frameBytes = FRAME_HEADER_BYTES + record.length;
        const used = this.active.size + chunkBytes;
        if (used > SEGMENT_HEADER_BYTES && used + frameBytes > this.config.segmentBytes) {
          await this.writeToActive(chunks, chunkBytes);
          chunks = [];
          chunkBytes = 0;
          await this.rollSegment();
        }
        appendPositions.push({ segment: this.active.segment, offset: this.active.size + chunkBytes });
        chunks.push(encodeFrameHeader(this.active.salt, record), record);
        chunkBytes += frameBytes;
      }
      positions.push(appendPositions);
      this.counters.records += pending.records.length;
    }
    const zeros = this.preallocation(chunkBytes);
    if (zeros > 0) chunks.push(Buffer.alloc(zeros));
    await this.writeToActive(chunks, chunkBytes + zeros, chunkBytes);
    if (this.config.sync) {
      if (O_DSYNC === undefined) await this.active.handle.datasync();
      this.counters.syncs++;
    }
    this.counters.batches++;
    return positions;
  }

  /**
   * Writes `byteCount` bytes at the end of the records: `recordBytes` of records, then any zeros of
   * preallocation.
   */
  private async writeToActive(chunks: Buffer[], byteCount: number, recordBytes = byteCount): Promise<void> {
    if (byteCount === 0) return;
    // One contiguous buffer: one write call, and no dependence on how writev splits large vectors.
    await writeFully(this.active.handle, Buffer.concat(chunks, byteCount), this.active.size);
    this.active.allocated = Math.max(this.active.allocated, this.active.size + byteCount);
    this.active.size += recordBytes;
  }

  /**
   * How many zeros to write after a batch of `recordBytes`: none while the batch fits in the
   * preallocated space, else enough to reach preallocateBytes past its end (never past
   * segmentBytes). See PREALLOCATION at the top of this file.
   */
  private preallocation(recordBytes: number): number {
    const { preallocateBytes, segmentBytes } = this.config;
    const end = this.active.size + recordBytes;
    if (preallocateBytes === 0 || end < this.active.allocated) return 0;
    return Math.max(0, Math.min(end + preallocateBytes, segmentBytes) - end);
  }

  /** Cuts the preallocated zeros off the active segment, so that it ends with its last record. */
  private async trimActive(): Promise<void> {
    if (this.active.allocated === this.active.size) return;
    await this.active.handle.truncate(this.active.size);
    this.active.allocated = this.active.size;
  }

  /** Seals the active segment and starts the next one. */
  private async rollSegment(): Promise<void> {
    // Sealed even with sync off: recovery treats any damage in a segment other than the last as
    // corruption, which is only sound if a segment is durable before its successor exists.
    await this.trimActive();
    await this.active.handle.datasync();
    this.counters.syncs++;
    await this.active.handle.close();
    const next = await createSegment(this.config.dir, this.active.segment + 1, this.config.sync);
    this.counters.syncs++;
    this.active = next;
    this.segments.push(next.segment);
  }

  private async dropSegments(before: number): Promise<number> {
    // Appends are going into the active segment, so it stays whatever the caller asked.
    const limit = Math.min(before, this.active.segment);
    let removed = 0;
    // Oldest first, syncing the folder after each removal: a crash at any point then leaves a
    // consecutive run of segments, which is what open() accepts (a gap reads as lost records).
    for (let oldest = this.segments[0]; oldest !== undefined && oldest < limit; oldest = this.segments[0]) {
      try {
        await unlink(join(this.config.dir, segmentFileName(oldest)));
        removed++;
      } catch (error) {
        if (!hasErrorCode(error, 'ENOENT')) throw error;
      }
      this.segments.shift();
      await fsyncDirectory(this.config.dir);
    }
    return removed;
  }

  private async closeOnce(): Promise<void> {
    this.state = 'closing';
    await this.drained;
    await this.dropping;
    try {
      // Even with sync off, a clean shutdown leaves the log durable.
      if (this.failure === undefined) {
        await this.trimActive();
        await this.active.handle.datasync();
        this.counters.syncs++;
      }
    } finally {
      await this.active.handle.close();
      this.state = 'closed';
      await this.unlock();
    }
  }
}

/** Whether every byte of `bytes` from `from` on is zero. */
function isAllZero(bytes: Buffer, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
