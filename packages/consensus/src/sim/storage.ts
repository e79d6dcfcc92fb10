// Simulated durable storage with the failure semantics of the real write-ahead log
// (raft-driver/raft-storage.ts over @concord/storage's WAL):
//
// - One Ready, one WAL record: its snapshot (received from the leader), entries and HardState are
//   written together and become durable together, when the fsync that follows completes. The
//   simulator completes it some ticks later; until then the record is only "written".
// - A crash loses whatever was not synced, in one of three ways chosen by the seed: the record
//   never reached the disk (lost), it reached it whole (the write was done, only its fsync was not
//   acknowledged: a restart finds it and keeps it, which is safe — nothing was promised on its
//   basis), or it is torn: cut short, or whole-length with an unwritten (zero) tail. Recovery scans
//   the tail like the real WAL does — length, then checksum — and drops a record that fails either.
// - Driver snapshots (compaction) are written atomically and synced at once: the real driver
//   writes the snapshot file with writeSnapshotAtomic before it appends its marker.
import type { Entry, HardState, SnapshotMeta } from '../raft/types.js';
import type { KvSnapshotData } from './kv.js';

export interface SnapshotImage {
  meta: SnapshotMeta;
  data: KvSnapshotData;
}

/** What one Ready asks to persist. */
export interface WalRecord {
  hardState?: HardState;
  entries: Entry[];
  snapshot?: SnapshotImage;
}

/** What happens to a written but unsynced record when the power goes. */
export type CrashFate = 'lost' | 'whole' | 'torn-short' | 'torn-zeroed';

export interface RecoveryReport {
  /** Bytes of a torn tail record that recovery cut off. */
  truncatedBytes: number;
  /** Whether an unsynced record was found whole and kept. */
  keptUnsynced: boolean;
}

const FRAME_HEADER_BYTES = 8;

export class SimDisk {
  hardState: HardState = { term: 0, vote: '', commit: 0 };
  snapshot: SnapshotImage | undefined;
  /** Entries after the snapshot (or from index 1), consecutive. */
  entries: Entry[] = [];
  private unsynced: WalRecord | undefined;
  /** Bytes past the last synced record, as a crash left them; read by recover(). */
  private tail: Uint8Array | undefined;

  /** Writes a Ready's record; it is durable only after sync(). One record at a time (one Ready in flight). */
  write(record: WalRecord): void {
    if (this.unsynced !== undefined) throw new Error('sim disk: a second record written before the first was synced');
    if (this.tail !== undefined) throw new Error('sim disk: written to before recovery');
    this.unsynced = record;
  }

  get syncing(): boolean {
    return this.unsynced !== undefined;
  }

  /** The fsync completed: the written record is durable. */
  sync(): WalRecord {
    const record = this.unsynced;
    if (record === undefined) throw new Error('sim disk: sync without a written record');
    this.unsynced = undefined;
    this.applyRecord(record);
    return record;
  }

  /** A driver snapshot at image.meta.index: written atomically and synced; the log before it goes. */
  compact(image: SnapshotImage): void {
    if (this.unsynced !== undefined) throw new Error('sim disk: compaction while a record is being synced');
    const index = image.meta.index;
    if (this.termAt(index) !== image.meta.term) {
      throw new Error(`sim disk: snapshot ${image.meta.term}/${index} does not match the stored log`);
    }
    this.entries = this.entries.filter((e) => e.index > index);
    this.snapshot = image;
  }

  /** Power loss: the unsynced record meets `fate`; `cut` picks where a torn record ends (in [0, length)). */
  crash(fate: CrashFate, cut: (length: number) => number): void {
    const record = this.unsynced;
    this.unsynced = undefined;
    if (record === undefined || fate === 'lost') return;
    const bytes = encodeFrame(record);
    if (fate === 'whole') {
      this.tail = bytes;
      return;
    }
    const at = Math.min(bytes.length - 1, Math.max(0, cut(bytes.length)));
    if (fate === 'torn-short') {
      this.tail = bytes.slice(0, at);
    } else {
      // The file was extended to the full length but the data past `at` never reached the platter.
      const zeroed = bytes.slice();
      zeroed.fill(0, Math.max(at, FRAME_HEADER_BYTES));
      this.tail = zeroed;
    }
  }

  /** Restart: scans what a crash left after the last synced record, keeping it only if it is whole. */
  recover(): RecoveryReport {
    const tail = this.tail;
    this.tail = undefined;
    if (tail === undefined || tail.length === 0) return { truncatedBytes: 0, keptUnsynced: false };
    const record = decodeFrame(tail);
    if (record === undefined) return { truncatedBytes: tail.length, keptUnsynced: false };
    this.applyRecord(record);
    return { truncatedBytes: 0, keptUnsynced: true };
  }

  lastIndex(): number {
    return (this.snapshot?.meta.index ?? 0) + this.entries.length;
  }

  firstIndex(): number {
    return (this.snapshot?.meta.index ?? 0) + 1;
  }

  /** The term of the stored entry at `index`: the snapshot's at its index, 0 at 0, undefined if not stored. */
  termAt(index: number): number | undefined {
    const offset = this.snapshot?.meta.index ?? 0;
    if (index === offset) return this.snapshot?.meta.term ?? 0;
    if (index < offset) return undefined;
    return this.entries[index - offset - 1]?.term;
  }

  entryAt(index: number): Entry | undefined {
    const offset = this.snapshot?.meta.index ?? 0;
    return index <= offset ? undefined : this.entries[index - offset - 1];
  }

  private applyRecord(record: WalRecord): void {
    if (record.snapshot !== undefined) {
      // A snapshot from the leader: the core discarded its whole log (§7), so does the disk.
      this.snapshot = record.snapshot;
      this.entries = [];
    }
    const first = record.entries[0];
    if (first !== undefined) {
      const offset = this.snapshot?.meta.index ?? 0;
      const keep = first.index - offset - 1;
      if (keep < 0 || keep > this.entries.length) {
        throw new Error(`sim disk: entries from ${first.index} leave a gap (stored ${offset + 1}..${this.lastIndex()})`);
      }
      this.entries = this.entries.slice(0, keep).concat(record.entries);
    }
    if (record.hardState !== undefined) this.hardState = { ...record.hardState };
  }
}

// ───────────── the record frame, like the real WAL's: [length u32][checksum u32][payload] ─────────────

interface EncodedEntry {
  term: number;
  index: number;
  type: Entry['type'];
  data: string;
}

function encodeFrame(record: WalRecord): Uint8Array {
  const payload: { hardState?: HardState; entries: EncodedEntry[]; snapshot?: SnapshotImage } = {
    entries: record.entries.map((e) => ({ term: e.term, index: e.index, type: e.type, data: Buffer.from(e.data).toString('base64') })),
  };
  if (record.hardState !== undefined) payload.hardState = record.hardState;
  if (record.snapshot !== undefined) payload.snapshot = record.snapshot;
  const body = new TextEncoder().encode(JSON.stringify(payload));
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, body.length);
  view.setUint32(4, checksum(body));
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

/** The record in `bytes`, or undefined when it is torn (too short, or its checksum fails). */
function decodeFrame(bytes: Uint8Array): WalRecord | undefined {
  if (bytes.length < FRAME_HEADER_BYTES) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(0);
  if (length === 0 || bytes.length < FRAME_HEADER_BYTES + length) return undefined;
  const body = bytes.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
  if (checksum(body) !== view.getUint32(4)) return undefined;
  const payload = JSON.parse(new TextDecoder().decode(body)) as {
    hardState?: HardState;
    entries: EncodedEntry[];
    snapshot?: SnapshotImage;
  };
  const record: WalRecord = {
    entries: payload.entries.map((e) => ({
      term: e.term,
      index: e.index,
      type: e.type,
      data: new Uint8Array(Buffer.from(e.data, 'base64')),
    })),
  };
  if (payload.hardState !== undefined) record.hardState = payload.hardState;
  if (payload.snapshot !== undefined) record.snapshot = payload.snapshot;
  return record;
}

/** FNV-1a over the bytes: enough to tell a torn record from a whole one in a simulation. */
function checksum(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}
