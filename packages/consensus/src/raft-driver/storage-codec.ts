// On-disk encodings of the Raft driver: the WAL records and the snapshot file payload. The storage
// package frames both (length + CRC per WAL record; magic, length and CRC around a snapshot file),
// so these encodings only say what the bytes mean. Integers are little-endian like the storage
// package's own framing; u64 values must be safe JavaScript integers (< 2^53).
//
// WAL RECORD = kind u8, then the body of that kind:
//
//   1 HARD_STATE       term u64 | commit u64 | vote: u16 byte length, UTF-8 (empty = no vote)
//   2 ENTRIES          count u32 | count × entry, indexes consecutive
//                        entry = term u64 | index u64 | type u8 | data: u32 byte length, bytes
//                        type: 1 normal, 2 conf_change, 3 noop (the proto's EntryType numbers)
//   3 SNAPSHOT_MARKER  index u64 | term u64 | membership: u32 byte length, UTF-8 JSON
//                        {"voters": [...], "learners": [...]}
//   4 BOOTSTRAP        u32 byte length, UTF-8 JSON {"voters": [...], "addresses": {id: "host:port"}}
//
// SNAPSHOT FILE PAYLOAD = format u8 (1) | header: u32 byte length, UTF-8 JSON
//   {"index", "term", "membership": {"voters", "learners"}, "addresses": {id: "host:port"}}
//   | the state machine's snapshot bytes (the rest of the file).
// The same bytes are what a leader streams to a follower in InstallSnapshot, so a follower stores
// exactly what the leader stored.
//
// What the records mean on replay (last HARD_STATE wins, an ENTRIES record replaces the stored
// suffix from its first index on, a marker compacts) is in raft-storage.ts.

import type { Entry, EntryType, HardState, Membership, NodeId, SnapshotMeta } from '../raft/types.js';

export const RECORD_HARD_STATE = 1;
export const RECORD_ENTRIES = 2;
export const RECORD_SNAPSHOT_MARKER = 3;
export const RECORD_BOOTSTRAP = 4;

const SNAPSHOT_PAYLOAD_FORMAT = 1;

/** The membership a brand-new group starts from, and where its first members listen. */
export interface BootstrapRecord {
  voters: NodeId[];
  addresses: Record<NodeId, string>;
}

export interface SnapshotMarker {
  index: number;
  term: number;
  membership: Membership;
}

export type StorageRecord =
  | { kind: 'hard_state'; hardState: HardState }
  | { kind: 'entries'; entries: Entry[] }
  | { kind: 'snapshot_marker'; marker: SnapshotMarker }
  | { kind: 'bootstrap'; bootstrap: BootstrapRecord };

/** A snapshot as stored in the snapshot file and sent to followers. */
export interface SnapshotPayload {
  meta: SnapshotMeta;
  /** Addresses of the members known when the snapshot was taken (routing only, never membership). */
  addresses: Record<NodeId, string>;
  stateMachineData: Uint8Array;
}

export class StorageFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StorageFormatError';
  }
}

const ENTRY_TYPE_CODES: Record<EntryType, number> = { normal: 1, conf_change: 2, noop: 3 };
const ENTRY_TYPES_BY_CODE = new Map<number, EntryType>(
  (Object.entries(ENTRY_TYPE_CODES) as [EntryType, number][]).map(([type, code]) => [code, type]),
);

const TWO_32 = 2 ** 32;
/** The high half of Number.MAX_SAFE_INTEGER (2^53 - 1): 2^21 - 1. */
const MAX_SAFE_HIGH = 2 ** 21 - 1;

/** A cursor writing into a buffer sized up front. */
class Writer {
  private offset = 0;
  readonly buffer: Buffer;
  constructor(size: number) {
    this.buffer = Buffer.allocUnsafe(size);
  }
  u8(value: number): this {
    this.offset = this.buffer.writeUInt8(value, this.offset);
    return this;
  }
  u16(value: number): this {
    this.offset = this.buffer.writeUInt16LE(value, this.offset);
    return this;
  }
  u32(value: number): this {
    this.offset = this.buffer.writeUInt32LE(value, this.offset);
    return this;
  }
  u64(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`cannot store ${value} as an unsigned 64-bit integer`);
    // Two 32-bit halves, low first: the same bytes as writeBigUInt64LE without a BigInt per field
    // (two per log entry, on every write of the log).
    this.buffer.writeUInt32LE(value % TWO_32, this.offset);
    this.offset = this.buffer.writeUInt32LE(Math.floor(value / TWO_32), this.offset + 4);
    return this;
  }
  bytes(value: Uint8Array): this {
    this.buffer.set(value, this.offset);
    this.offset += value.byteLength;
    return this;
  }
  finish(): Buffer {
    if (this.offset !== this.buffer.length) throw new Error(`encoder wrote ${this.offset} of ${this.buffer.length} bytes`);
    return this.buffer;
  }
}

/** A cursor reading a record; every overrun is a StorageFormatError naming what was being read. */
class Reader {
  private offset = 0;
  constructor(
    private readonly buffer: Buffer,
    private readonly what: string,
  ) {}
  private need(bytes: number, field: string): void {
    if (this.offset + bytes > this.buffer.length) {
      throw new StorageFormatError(`${this.what}: truncated while reading ${field} (offset ${this.offset}, ${this.buffer.length} bytes)`);
    }
  }
  u8(field: string): number {
    this.need(1, field);
    return this.buffer.readUInt8(this.offset++);
  }
  u16(field: string): number {
    this.need(2, field);
    const value = this.buffer.readUInt16LE(this.offset);
    this.offset += 2;
    return value;
  }
  u32(field: string): number {
    this.need(4, field);
    const value = this.buffer.readUInt32LE(this.offset);
    this.offset += 4;
    return value;
  }
  u64(field: string): number {
    this.need(8, field);
    const low = this.buffer.readUInt32LE(this.offset);
    const high = this.buffer.readUInt32LE(this.offset + 4);
    this.offset += 8;
    // Above 2^53 - 1 a number is no longer exact.
    if (high > MAX_SAFE_HIGH) throw new StorageFormatError(`${this.what}: ${field} ${(BigInt(high) << 32n) | BigInt(low)} is out of range`);
    return high * TWO_32 + low;
  }
  bytes(length: number, field: string): Buffer {
    this.need(length, field);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
  rest(): Buffer {
    const value = this.buffer.subarray(this.offset);
    this.offset = this.buffer.length;
    return value;
  }
  end(): void {
    if (this.offset !== this.buffer.length) {
      throw new StorageFormatError(`${this.what}: ${this.buffer.length - this.offset} unexpected bytes after the record`);
    }
  }
}

function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (error) {
    throw new StorageFormatError(`${what}: invalid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

function isAddressMap(value: unknown): value is Record<string, string> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every((item) => typeof item === 'string');
}

function checkMembership(value: unknown, what: string): Membership {
  const candidate = value as Partial<Membership> | null;
  if (typeof candidate !== 'object' || candidate === null || !isStringArray(candidate.voters) || !isStringArray(candidate.learners)) {
    throw new StorageFormatError(`${what}: membership must be {voters: string[], learners: string[]}`);
  }
  return { voters: [...candidate.voters], learners: [...candidate.learners] };
}

export function encodeHardState(hardState: HardState): Buffer {
  const vote = Buffer.from(hardState.vote, 'utf8');
  if (vote.length > 0xffff) throw new RangeError(`member id ${hardState.vote.slice(0, 40)}… is too long`);
  return new Writer(1 + 8 + 8 + 2 + vote.length).u8(RECORD_HARD_STATE).u64(hardState.term).u64(hardState.commit).u16(vote.length).bytes(vote).finish();
}

export function encodeEntries(entries: readonly Entry[]): Buffer {
  if (entries.length === 0) throw new RangeError('an entries record needs at least one entry');
  let size = 1 + 4;
  for (const entry of entries) size += 8 + 8 + 1 + 4 + entry.data.byteLength;
  const writer = new Writer(size).u8(RECORD_ENTRIES).u32(entries.length);
  let expected = entries[0]!.index;
  for (const entry of entries) {
    if (entry.index !== expected) throw new RangeError(`entries to store must have consecutive indexes (expected ${expected}, got ${entry.index})`);
    expected++;
    writer.u64(entry.term).u64(entry.index).u8(ENTRY_TYPE_CODES[entry.type]).u32(entry.data.byteLength).bytes(entry.data);
  }
  return writer.finish();
}

export function encodeSnapshotMarker(marker: SnapshotMarker): Buffer {
  const membership = jsonBytes({ voters: marker.membership.voters, learners: marker.membership.learners });
  return new Writer(1 + 8 + 8 + 4 + membership.length)
    .u8(RECORD_SNAPSHOT_MARKER)
    .u64(marker.index)
    .u64(marker.term)
    .u32(membership.length)
    .bytes(membership)
    .finish();
}

export function encodeBootstrap(bootstrap: BootstrapRecord): Buffer {
  const body = jsonBytes({ voters: bootstrap.voters, addresses: bootstrap.addresses });
  return new Writer(1 + 4 + body.length).u8(RECORD_BOOTSTRAP).u32(body.length).bytes(body).finish();
}

export function decodeRecord(record: Buffer): StorageRecord {
  const reader = new Reader(record, 'Raft WAL record');
  const kind = reader.u8('kind');
  switch (kind) {
    case RECORD_HARD_STATE: {
      const term = reader.u64('term');
      const commit = reader.u64('commit');
      const vote = reader.bytes(reader.u16('vote length'), 'vote').toString('utf8');
      reader.end();
      return { kind: 'hard_state', hardState: { term, vote, commit } };
    }
    case RECORD_ENTRIES: {
      const count = reader.u32('entry count');
      const entries: Entry[] = [];
      for (let i = 0; i < count; i++) {
        const term = reader.u64('entry term');
        const index = reader.u64('entry index');
        const code = reader.u8('entry type');
        const type = ENTRY_TYPES_BY_CODE.get(code);
        if (type === undefined) throw new StorageFormatError(`Raft WAL record: unknown entry type ${code} at index ${index}`);
        const data = reader.bytes(reader.u32('entry data length'), 'entry data');
        const previous = entries[entries.length - 1];
        if (previous !== undefined && index !== previous.index + 1) {
          throw new StorageFormatError(`Raft WAL record: entry ${index} follows entry ${previous.index}`);
        }
        entries.push({ term, index, type, data });
      }
      reader.end();
      if (entries.length === 0) throw new StorageFormatError('Raft WAL record: an entries record with no entries');
      return { kind: 'entries', entries };
    }
    case RECORD_SNAPSHOT_MARKER: {
      const index = reader.u64('snapshot index');
      const term = reader.u64('snapshot term');
      const membership = checkMembership(parseJson(reader.bytes(reader.u32('membership length'), 'membership'), 'snapshot marker'), 'snapshot marker');
      reader.end();
      return { kind: 'snapshot_marker', marker: { index, term, membership } };
    }
    case RECORD_BOOTSTRAP: {
      const body = parseJson(reader.bytes(reader.u32('bootstrap length'), 'bootstrap'), 'bootstrap record') as Partial<BootstrapRecord> | null;
      reader.end();
      if (typeof body !== 'object' || body === null || !isStringArray(body.voters) || !isAddressMap(body.addresses)) {
        throw new StorageFormatError('bootstrap record: must be {voters: string[], addresses: {id: address}}');
      }
      return { kind: 'bootstrap', bootstrap: { voters: body.voters, addresses: { ...body.addresses } } };
    }
    default:
      throw new StorageFormatError(`Raft WAL record: unknown kind ${kind}`);
  }
}

export function encodeSnapshotPayload(snapshot: SnapshotPayload): Buffer {
  return Buffer.concat(encodeSnapshotPayloadParts(snapshot));
}

/** encodeSnapshotPayload as two parts, its header and the state machine's bytes (not copied). */
export function encodeSnapshotPayloadParts(snapshot: SnapshotPayload): [Buffer, Uint8Array] {
  return [encodeSnapshotPayloadHeader(snapshot.meta, snapshot.addresses), snapshot.stateMachineData];
}

/** What comes before the state machine's bytes in a snapshot payload. */
export function encodeSnapshotPayloadHeader(meta: SnapshotMeta, addresses: SnapshotPayload['addresses']): Buffer {
  const header = jsonBytes({
    index: meta.index,
    term: meta.term,
    membership: { voters: meta.membership.voters, learners: meta.membership.learners },
    addresses,
  });
  return new Writer(1 + 4 + header.length).u8(SNAPSHOT_PAYLOAD_FORMAT).u32(header.length).bytes(header).finish();
}

export function decodeSnapshotPayload(payload: Buffer): SnapshotPayload {
  const reader = new Reader(payload, 'Raft snapshot');
  const format = reader.u8('format');
  if (format !== SNAPSHOT_PAYLOAD_FORMAT) {
    throw new StorageFormatError(`Raft snapshot: unknown payload format ${format} (this build reads ${SNAPSHOT_PAYLOAD_FORMAT})`);
  }
  const header = parseJson(reader.bytes(reader.u32('header length'), 'header'), 'Raft snapshot header') as {
    index?: unknown;
    term?: unknown;
    membership?: unknown;
    addresses?: unknown;
  } | null;
  if (typeof header !== 'object' || header === null) throw new StorageFormatError('Raft snapshot header: must be an object');
  const { index, term } = header;
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(term) || (index as number) < 0 || (term as number) < 0) {
    throw new StorageFormatError('Raft snapshot header: index and term must be non-negative integers');
  }
  if (!isAddressMap(header.addresses)) throw new StorageFormatError('Raft snapshot header: addresses must map member ids to addresses');
  return {
    meta: { index: index as number, term: term as number, membership: checkMembership(header.membership, 'Raft snapshot header') },
    addresses: { ...header.addresses },
    stateMachineData: reader.rest(),
  };
}
