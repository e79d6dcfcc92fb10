// The replicated state of one shard group: an ordered map of key → value and version. It is the
// StateMachine a consensus group applies its committed ShardCommands to, so it is deterministic:
// the result depends only on the current state, the command and its log index, never on clocks.

import sortedBtree from 'sorted-btree';
import { ShardCommand, type ShardCommandResult, type ShardDeleteCommand, type ShardPutCommand } from '@concord/proto/shard';
import type { KeyValue } from '@concord/proto/common';
import type { StateMachine } from '@concord/consensus';
import { compareKeys } from './key-order.js';

// sorted-btree is CommonJS: from ESM its default import is `module.exports`, whose `default` is the class.
const BTree = sortedBtree.default;
type BTree<K, V> = InstanceType<typeof sortedBtree.default<K, V>>;

/** What the map holds per key. `version` is the log index of the key's last write. */
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

/** Entries encoded between two turns of the event loop by snapshotAsync (well under a millisecond). */
const SNAPSHOT_SLICE_ENTRIES = 2048;

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Encodes a (frozen) tree in the snapshot format in two passes — sizes, then bytes — each of which
 * can be interrupted after any entry: step(n) does up to n entries and says whether it is done.
 */
class SnapshotEncoder {
  private readonly tree: BTree<string, StoredValue>;
  private pass: 'size' | 'write' | 'done' = 'size';
  private iterator: Iterator<[string, StoredValue]>;
  private total = SNAPSHOT_HEADER_BYTES;
  private out: Buffer | undefined;
  private offset = SNAPSHOT_HEADER_BYTES;

  constructor(tree: BTree<string, StoredValue>) {
    this.tree = tree;
    this.iterator = tree.entries();
  }

  step(limit: number): boolean {
    let count = 0;
    while (this.pass !== 'done' && count < limit) {
      const next = this.iterator.next();
      if (next.done === true) {
        this.endPass();
        continue;
      }
      const [key, stored] = next.value;
      if (this.pass === 'size') {
        this.total += ENTRY_FRAMING_BYTES + Buffer.byteLength(key, 'utf8') + stored.value.byteLength;
      } else {
        const out = this.out!;
        const keyBytes = out.write(key, this.offset + 4, 'utf8');
        out.writeUInt32BE(keyBytes, this.offset);
        this.offset += 4 + keyBytes;
        out.writeUInt32BE(Math.floor(stored.version / TWO_POW_32), this.offset);
        out.writeUInt32BE(stored.version % TWO_POW_32, this.offset + 4);
        out.writeUInt32BE(stored.value.byteLength, this.offset + 8);
        this.offset += 12;
        this.offset += stored.value.copy(out, this.offset);
      }
      count++;
    }
    return this.pass === 'done';
  }

  result(): Buffer {
    if (this.pass !== 'done' || this.out === undefined) throw new Error('snapshot: encoding is not finished');
    return this.out;
  }

  private endPass(): void {
    if (this.pass === 'size') {
      const out = Buffer.allocUnsafe(this.total);
      SNAPSHOT_MAGIC.copy(out, 0);
      out.writeUInt32BE(this.tree.size, SNAPSHOT_MAGIC.length);
      this.out = out;
      this.pass = 'write';
      this.iterator = this.tree.entries();
      return;
    }
    if (this.offset !== this.total) throw new Error(`snapshot: wrote ${this.offset} bytes, expected ${this.total}`);
    this.pass = 'done';
  }
}

export class KvStateMachine implements StateMachine<ShardCommandResult> {
  private tree: BTree<string, StoredValue> = new BTree<string, StoredValue>(undefined, compareKeys);

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
    const current = this.tree.get(put.key);
    if (!matchesExpected(put.expectedVersion, current)) {
      return { applied: false, version: current?.version ?? 0, existed: current !== undefined };
    }
    this.tree.set(put.key, { value: ownedCopy(put.value), version: index });
    return { applied: true, version: index, existed: current !== undefined };
  }

  private applyDelete(del: ShardDeleteCommand): ShardCommandResult {
    const current = this.tree.get(del.key);
    if (!matchesExpected(del.expectedVersion, current)) {
      return { applied: false, version: current?.version ?? 0, existed: current !== undefined };
    }
    if (current !== undefined) this.tree.delete(del.key);
    return { applied: true, version: current?.version ?? 0, existed: current !== undefined };
  }

  /** The key's value and version, or undefined when it does not exist. */
  get(key: string): StoredValue | undefined {
    return this.tree.get(key);
  }

  get keyCount(): number {
    return this.tree.size;
  }

  /**
   * The entries of a prefix or range in key order (UTF-8 byte order), lazily. The view is taken
   * when scan() is called: writes applied while the caller iterates (e.g. between the batches of a
   * streamed Scan) are not seen, so a scan is one consistent cut. Taking it is O(1): the tree is
   * cloned copy-on-write, and the next write copies only the nodes on its path.
   */
  scan(options: ScanOptions): IterableIterator<KeyValue> {
    const prefix = options.prefix ?? '';
    const startKey = options.startKey ?? '';
    const endKey = options.endKey ?? '';
    if (prefix !== '' && (startKey !== '' || endKey !== '')) {
      throw new Error('scan: a prefix cannot be combined with startKey/endKey');
    }
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    return scanView(this.tree.clone(), prefix, startKey, endKey, limit);
  }

  snapshot(): Uint8Array {
    const encoder = new SnapshotEncoder(this.tree);
    while (!encoder.step(Number.POSITIVE_INFINITY));
    return encoder.result();
  }

  /**
   * The same bytes as snapshot(), without stalling the caller for as long as encoding takes (tens
   * of milliseconds for ~10 MiB of keys): the map is captured now by a copy-on-write clone, so later
   * writes do not change the result, and encoded SNAPSHOT_SLICE_ENTRIES at a time with a turn of the
   * event loop in between.
   */
  async snapshotAsync(): Promise<Uint8Array> {
    const encoder = new SnapshotEncoder(this.tree.clone());
    while (!encoder.step(SNAPSHOT_SLICE_ENTRIES)) await yieldToEventLoop();
    return encoder.result();
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
    const tree = new BTree<string, StoredValue>(undefined, compareKeys);
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
      // A copy, so the (possibly large) snapshot buffer is not kept alive by a few old values.
      const value = ownedCopy(input.subarray(valueStart, valueStart + valueLength));
      tree.set(key, { value, version });
      previousKey = key;
      offset = valueStart + valueLength;
    }
    if (offset !== input.length) fail(`${input.length - offset} bytes after the last entry`, offset);
    this.tree = tree;
  }
}

/**
 * The bytes in a buffer of their own. A decoded value is a view into whatever it was decoded from:
 * the log entry, the append message, and through them a 64 KiB slab of Node's buffer pool shared
 * with other, short-lived buffers (Buffer.from and Buffer.concat cut anything under 32 KiB from it).
 * Kept as a view, one stored value would keep all of that alive for as long as the key is not
 * overwritten; a shard's memory would follow the traffic it has seen, not the data it holds.
 */
function ownedCopy(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.byteLength);
  copy.set(bytes);
  return copy;
}

/** Expected version: absent = unconditional; 0 = the key must not exist; N = current version is N. */
function matchesExpected(expected: number | undefined, current: StoredValue | undefined): boolean {
  if (expected === undefined) return true;
  return (current?.version ?? 0) === expected;
}

function* scanView(
  view: BTree<string, StoredValue>,
  prefix: string,
  startKey: string,
  endKey: string,
  limit: number,
): IterableIterator<KeyValue> {
  if (limit <= 0) return;
  // Keys with a given prefix are contiguous in code point order and start at the prefix itself.
  const lowest = prefix !== '' ? prefix : startKey !== '' ? startKey : undefined;
  let count = 0;
  for (const [key, stored] of view.entries(lowest)) {
    if (prefix !== '' && !key.startsWith(prefix)) return;
    if (endKey !== '' && compareKeys(key, endKey) >= 0) return;
    yield { key, value: stored.value, version: stored.version };
    if (++count >= limit) return;
  }
}
