// The replicated state of one shard group: an ordered map of key → value and version. It is the
// StateMachine a consensus group applies its committed ShardCommands to, so it is deterministic:
// the result depends only on the current state, the command and its log index, never on clocks.

import { ShardCommand, type ShardCommandResult, type ShardDeleteCommand, type ShardPutCommand } from '@concord/proto/shard';
import type { KeyValue } from '@concord/proto/common';
import type { StateMachine } from '@concord/consensus';
import { compareKeys } from './key-order.js';
import { OffHeapStore, type StoreView } from './off-heap-store.js';

/**
 * What the map holds per key. `version` is the log index of the key's last write; `value` is a
 * view of bytes that never change (off-heap-store.ts), not a copy.
 */
export interface StoredValue {
  value: Buffer;
  version: number;
}

/**
 * Which keys to scan: a prefix, or the range [startKey, endKey). An empty string means "not set"
 * (as in the proto): no prefix, from the first key, to the last key.
 */
export interface ScanOptions {
  prefix?: string;
  startKey?: string;
  endKey?: string;
  /** At most this many entries; default: no limit. */
  limit?: number;
}

/**
 * Snapshot format, all integers big-endian:
 *
 *   magic "CKV1" (4 bytes: Concord KV, format 1)
 *   u32 entry count
 *   per entry, in key order:
 *     u32 key length, key (UTF-8), u64 version, u32 value length, value
 *
 * 20 bytes of framing per entry and no per-entry allocation on encode, so 100k small keys
 * snapshot in a few milliseconds. Keys are written in order so restore can verify it cheaply.
 */
const SNAPSHOT_MAGIC = Buffer.from('CKV1', 'ascii');
const SNAPSHOT_HEADER_BYTES = SNAPSHOT_MAGIC.length + 4;
const ENTRY_FRAMING_BYTES = 4 + 8 + 4;
const TWO_POW_32 = 2 ** 32;

/**
 * Bytes per piece of snapshotChunks: one is encoded (about a millisecond for small entries), then
 * written, while the event loop serves other work, before the next.
 */
const SNAPSHOT_CHUNK_BYTES = 256 * 1024;

/**
 * The snapshot of a view of the store, in pieces of about `chunkBytes`: each piece is a view of one
 * buffer that the next piece reuses, so the caller must be done with a piece before asking for
 * the next. An entry larger than the buffer comes as a piece of its own.
 */
function* snapshotPieces(view: StoreView, chunkBytes: number): Generator<Buffer> {
  let out = Buffer.allocUnsafe(chunkBytes);
  SNAPSHOT_MAGIC.copy(out, 0);
  out.writeUInt32BE(view.size, SNAPSHOT_MAGIC.length);
  let at = SNAPSHOT_HEADER_BYTES;
  // Record bytes are copied as they are: no string or buffer object per key.
  const cursor = view.cursor();
  while (cursor.next()) {
    const { chunk, keyStart, keyLength, valueStart, valueLength, version } = cursor;
    const room = ENTRY_FRAMING_BYTES + keyLength + valueLength;
    if (at + room > out.length) {
      if (at > 0) yield out.subarray(0, at);
      at = 0;
      if (room > out.length) out = Buffer.allocUnsafe(room);
    }
    out.writeUInt32BE(keyLength, at);
    at += 4;
    at += chunk.copy(out, at, keyStart, keyStart + keyLength);
    out.writeUInt32BE(Math.floor(version / TWO_POW_32), at);
    out.writeUInt32BE(version % TWO_POW_32, at + 4);
    out.writeUInt32BE(valueLength, at + 8);
    at += 12;
    at += chunk.copy(out, at, valueStart, valueStart + valueLength);
    if (out.length > chunkBytes) {
      // A buffer grown for one large entry goes out alone, and the usual size comes back.
      yield out.subarray(0, at);
      out = Buffer.allocUnsafe(chunkBytes);
      at = 0;
    }
  }
  if (at > 0) yield out.subarray(0, at);
}

export class KvStateMachine implements StateMachine<ShardCommandResult> {
  /** Keys and values off the JavaScript heap: see off-heap-store.ts for why. */
  private store = new OffHeapStore();

  /** Decodes a ShardCommand and applies it; `index` becomes the version of the key it writes. */
  apply(command: Uint8Array, index: number): ShardCommandResult {
    const decoded = ShardCommand.decode(command);
    switch (decoded.command?.$case) {
      case 'put':
        return this.applyPut(decoded.command.value, index);
      case 'delete':
        return this.applyDelete(decoded.command.value);
      default:
        // Only this service writes shard commands, so an empty one means a newer version wrote
        // it: applying it as a no-op here would let replicas of different versions diverge.
        throw new Error(`shard command at log index ${index} holds no operation this version knows`);
    }
  }

  private applyPut(put: ShardPutCommand, index: number): ShardCommandResult {
    // The store copies the bytes: the value decoded from the log entry is not kept.
    const { previous, written } = this.store.put(put.key, put.value, index, put.expectedVersion);
    if (!written) return { applied: false, version: previous ?? 0, existed: previous !== undefined };
    return { applied: true, version: index, existed: previous !== undefined };
  }

  private applyDelete(del: ShardDeleteCommand): ShardCommandResult {
    const current = this.store.version(del.key);
    if (!matchesExpected(del.expectedVersion, current)) {
      return { applied: false, version: current ?? 0, existed: current !== undefined };
    }
    if (current !== undefined) this.store.delete(del.key);
    return { applied: true, version: current ?? 0, existed: current !== undefined };
  }

  /** The key's value and version, or undefined when it does not exist. */
  get(key: string): StoredValue | undefined {
    return this.store.get(key);
  }

  get keyCount(): number {
    return this.store.size;
  }

  /** Bytes of the store's records: live, and dead (overwritten or deleted, not reclaimed yet). */
  get storeBytes(): { live: number; dead: number } {
    const { live, dead } = this.store.bytes;
    return { live, dead };
  }

  /**
   * The entries of a prefix or range in key order (UTF-8 byte order), lazily. The view is taken
   * when scan() is called: writes applied while the caller iterates (e.g. between the batches of a
   * streamed Scan) are not seen, so a scan is one consistent cut. Taking it copies the store's page
   * list (one entry per 256 keys); a later write copies only the page it changes.
   */
  scan(options: ScanOptions): IterableIterator<KeyValue> {
    const prefix = options.prefix ?? '';
    const startKey = options.startKey ?? '';
    const endKey = options.endKey ?? '';
    if (prefix !== '' && (startKey !== '' || endKey !== '')) {
      throw new Error('scan: a prefix cannot be combined with startKey/endKey');
    }
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    return scanView(this.store.view(), prefix, startKey, endKey, limit);
  }

  snapshot(): Uint8Array {
    // The pieces share one buffer: each is copied before the next is made.
    const pieces: Buffer[] = [];
    for (const piece of snapshotPieces(this.store.view(), SNAPSHOT_CHUNK_BYTES)) pieces.push(Buffer.from(piece));
    return Buffer.concat(pieces);
  }

  /**
   * The bytes of snapshot(), piece by piece (StateMachine.snapshotChunks): the state is captured now
   * by a view of the store, so writes applied while the pieces are written do not change them,
   * and a piece is encoded only once the previous one has been consumed, so a snapshot of any size
   * holds one buffer of SNAPSHOT_CHUNK_BYTES and never stalls the event loop for long.
   */
  snapshotChunks(chunkBytes = SNAPSHOT_CHUNK_BYTES): AsyncIterable<Uint8Array> {
    const pieces = snapshotPieces(this.store.view(), chunkBytes);
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => Promise.resolve(pieces.next()),
        return: () => Promise.resolve(pieces.return(undefined)),
      }),
    };
  }

  /**
   * Replaces the whole state with a snapshot. A malformed snapshot throws and leaves the current
   * state untouched: the storage layer checks a CRC, so this means a bug, not a bad disk.
   */
  restore(snapshot: Uint8Array): void {
    const input = Buffer.from(snapshot.buffer, snapshot.byteOffset, snapshot.byteLength);
    const fail = (what: string, at: number): never => {
      throw new Error(`shard snapshot is malformed at byte ${at}: ${what}`);
    };
    if (input.length < SNAPSHOT_HEADER_BYTES || !input.subarray(0, SNAPSHOT_MAGIC.length).equals(SNAPSHOT_MAGIC)) {
      fail('missing the CKV1 header', 0);
    }
    const count = input.readUInt32BE(SNAPSHOT_MAGIC.length);
    const store = new OffHeapStore();
    let offset = SNAPSHOT_HEADER_BYTES;
    let previousKey: string | undefined;
    for (let i = 0; i < count; i++) {
      if (offset + 4 > input.length) fail(`entry ${i} is truncated`, offset);
      const keyLength = input.readUInt32BE(offset);
      const keyEnd = offset + 4 + keyLength;
      if (keyEnd + 12 > input.length) fail(`entry ${i} is truncated`, offset);
      const key = input.toString('utf8', offset + 4, keyEnd);
      if (previousKey !== undefined && compareKeys(previousKey, key) >= 0) fail(`entry ${i} is out of key order`, offset);
      const version = input.readUInt32BE(keyEnd) * TWO_POW_32 + input.readUInt32BE(keyEnd + 4);
      if (!Number.isSafeInteger(version)) fail(`entry ${i} has a version beyond 2^53`, keyEnd);
      const valueLength = input.readUInt32BE(keyEnd + 8);
      const valueStart = keyEnd + 12;
      if (valueStart + valueLength > input.length) fail(`entry ${i} is truncated`, offset);
      // The store copies the bytes: the (possibly large) snapshot buffer is not kept alive.
      store.set(key, input.subarray(valueStart, valueStart + valueLength), version);
      previousKey = key;
      offset = valueStart + valueLength;
    }
    if (offset !== input.length) fail(`${input.length - offset} bytes after the last entry`, offset);
    this.store = store;
  }
}

/** Expected version: absent = unconditional; 0 = the key must not exist; N = current version is N. */
function matchesExpected(expected: number | undefined, currentVersion: number | undefined): boolean {
  if (expected === undefined) return true;
  return (currentVersion ?? 0) === expected;
}

function* scanView(view: StoreView, prefix: string, startKey: string, endKey: string, limit: number): IterableIterator<KeyValue> {
  if (limit <= 0) return;
  // Keys with a given prefix are contiguous in code point order and start at the prefix itself.
  const lowest = prefix !== '' ? prefix : startKey !== '' ? startKey : undefined;
  let count = 0;
  for (const { key, value, version } of view.entries(lowest === undefined ? undefined : Buffer.from(lowest, 'utf8'))) {
    if (prefix !== '' && !key.startsWith(prefix)) return;
    if (endKey !== '' && compareKeys(key, endKey) >= 0) return;
    yield { key, value, version };
    if (++count >= limit) return;
  }
}
