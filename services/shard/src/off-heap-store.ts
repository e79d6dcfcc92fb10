// An ordered map of key → (value, version) whose keys and values live outside the JavaScript heap:
// what a shard replica keeps for every key costs the garbage collector nothing per key.
//
// WHY. With the keys in a sorted-btree, every key was a string, an object and a buffer of its own
// on the V8 heap: each scavenge copied the new ones and each full collection marked them all. At
// 64 puts in flight this store took 1.7 ms off the p99 of puts and raised their throughput
// (docs/performance.md, "the state machine off the heap").
//
// HOW.
//   * Records `[u32 key length][u32 value length][u32 version high][u32 version low][key][value]`
//     are appended to chunks (CHUNK_BYTES array buffers; a record larger than a quarter of a chunk
//     gets a chunk of its own). A record is never changed once written, so a value handed out is a
//     view that stays valid: later writes append new records.
//   * A record is found by its reference, chunk × 2^32 + offset, a double.
//   * Order: sorted pages of references (Float64Array, at most PAGE_SLOTS each), compared on the
//     keys' UTF-8 bytes, which is code point order, the store's key order (key-order.ts). About one
//     JavaScript object per PAGE_SLOTS keys.
//   * Views (scans, snapshots) are consistent cuts: a view takes a copy of the page list and of the
//     chunk table, and pages are copied on their next write once a view may share them. Compaction
//     moves live records out of mostly-dead chunks into the current one and drops the old chunk
//     from the table; a view that still needs it keeps its own reference to it.

const CHUNK_BYTES = 256 * 1024;
const RECORD_HEADER = 16;
const CHUNK_SPAN = 2 ** 32;
const PAGE_SLOTS = 256;
const TWO_POW_32 = 2 ** 32;

/** What a view sees of one record. */
export interface StoreEntry {
  key: string;
  /** A view of the stored bytes, valid for good (records are never overwritten). */
  value: Buffer;
  version: number;
}

interface Page {
  refs: Float64Array;
  count: number;
  /** The store's epoch when this page object was made: shared with the views of earlier epochs. */
  epoch: number;
}

export interface OffHeapStoreOptions {
  /** Bytes per chunk (tests use small ones to exercise compaction). */
  chunkBytes?: number;
  /** Keys per page. */
  pageSlots?: number;
}

/** A consistent cut of the store: its pages and chunks as they were when the view was taken. */
export class StoreView {
  constructor(
    private readonly pages: readonly Page[],
    private readonly chunks: readonly (Buffer | undefined)[],
    readonly size: number,
  ) {}

  /**
   * A cursor over every record in key order that makes no object per record: for copying the
   * records out (a snapshot) without garbage in proportion to the store.
   */
  cursor(): StoreCursor {
    return new StoreCursor(this.pages, this.chunks);
  }

  /** Entries in key order from the first key ≥ `from` (UTF-8 bytes; all when undefined). */
  *entries(from?: Buffer): Generator<StoreEntry> {
    let pageIndex = 0;
    let slot = 0;
    if (from !== undefined) {
      const found = locate(this.pages, this.chunks, from, 0, from.length);
      pageIndex = found.page;
      slot = found.slot;
    }
    for (; pageIndex < this.pages.length; pageIndex++, slot = 0) {
      const page = this.pages[pageIndex]!;
      for (; slot < page.count; slot++) yield readEntry(this.chunks, page.refs[slot]!);
    }
  }
}

/** The record under a cursor: its chunk and where its key and value are in it. */
export class StoreCursor {
  chunk: Buffer = Buffer.alloc(0);
  keyStart = 0;
  keyLength = 0;
  valueStart = 0;
  valueLength = 0;
  version = 0;
  private page = 0;
  private slot = -1;

  constructor(
    private readonly pages: readonly Page[],
    private readonly chunks: readonly (Buffer | undefined)[],
  ) {}

  /** Moves to the next record; false at the end. */
  next(): boolean {
    this.slot++;
    while (this.page < this.pages.length && this.slot >= this.pages[this.page]!.count) {
      this.page++;
      this.slot = 0;
    }
    if (this.page >= this.pages.length) return false;
    const ref = this.pages[this.page]!.refs[this.slot]!;
    const index = Math.floor(ref / CHUNK_SPAN);
    const chunk = this.chunks[index]!;
    const at = ref - index * CHUNK_SPAN;
    this.chunk = chunk;
    this.keyLength = chunk.readUInt32LE(at);
    this.valueLength = chunk.readUInt32LE(at + 4);
    this.version = chunk.readUInt32LE(at + 8) * TWO_POW_32 + chunk.readUInt32LE(at + 12);
    this.keyStart = at + RECORD_HEADER;
    this.valueStart = this.keyStart + this.keyLength;
    return true;
  }
}

export class OffHeapStore {
  private readonly chunkBytes: number;
  private readonly pageSlots: number;
  private chunks: (Buffer | undefined)[] = [];
  /** Bytes of live records per chunk; bytes written per chunk. */
  private live: number[] = [];
  private filled: number[] = [];
  /** Table slots whose chunk was freed, for the next chunks. */
  private readonly freeSlots: number[] = [];
  private current = -1;
  private pages: Page[] = [];
  private epoch = 0;
  private count = 0;
  private liveBytes = 0;
  private deadBytes = 0;
  private scratch = Buffer.allocUnsafe(1024);
  private compacted = 0;

  constructor(options: OffHeapStoreOptions = {}) {
    this.chunkBytes = options.chunkBytes ?? CHUNK_BYTES;
    this.pageSlots = options.pageSlots ?? PAGE_SLOTS;
    if (!Number.isInteger(this.chunkBytes) || this.chunkBytes < 64) throw new RangeError(`chunkBytes: at least 64 (got ${this.chunkBytes})`);
    if (!Number.isInteger(this.pageSlots) || this.pageSlots < 4) throw new RangeError(`pageSlots: at least 4 (got ${this.pageSlots})`);
  }

  get size(): number {
    return this.count;
  }

  /** Chunks whose live records compaction moved elsewhere, since the store was made. */
  get compactions(): number {
    return this.compacted;
  }

  /**
   * Bytes of records: live, dead (not reclaimed yet) and held (written to the chunks in the
   * table, which is live + dead).
   */
  get bytes(): { live: number; dead: number; held: number } {
    let held = 0;
    for (let i = 0; i < this.chunks.length; i++) if (this.chunks[i] !== undefined) held += this.filled[i]!;
    return { live: this.liveBytes, dead: this.deadBytes, held };
  }

  /** The key's value (a view) and version; the caller has the key, so it is not decoded again. */
  get(key: string): { value: Buffer; version: number } | undefined {
    const length = this.encode(key);
    const found = locate(this.pages, this.chunks, this.scratch, 0, length);
    if (!found.exact) return undefined;
    const ref = this.pages[found.page]!.refs[found.slot]!;
    const index = Math.floor(ref / CHUNK_SPAN);
    const chunk = this.chunks[index]!;
    const at = ref - index * CHUNK_SPAN;
    const valueStart = at + RECORD_HEADER + chunk.readUInt32LE(at);
    return { value: chunk.subarray(valueStart, valueStart + chunk.readUInt32LE(at + 4)), version: readVersion(this.chunks, ref) };
  }

  /** The key's version, or undefined when it does not exist (no value view made). */
  version(key: string): number | undefined {
    const length = this.encode(key);
    const found = locate(this.pages, this.chunks, this.scratch, 0, length);
    if (!found.exact) return undefined;
    return readVersion(this.chunks, this.pages[found.page]!.refs[found.slot]!);
  }

  set(key: string, value: Uint8Array, version: number): void {
    this.put(key, value, version, undefined);
  }

  /**
   * Writes the key unless `expected` is given and differs from its current version (0: the key
   * must not exist). Returns the version the key had (undefined: none) and whether it was written,
   * with one search of the index.
   */
  put(key: string, value: Uint8Array, version: number, expected: number | undefined): { previous: number | undefined; written: boolean } {
    const keyLength = this.encode(key);
    const found = locate(this.pages, this.chunks, this.scratch, 0, keyLength);
    const previous = found.exact ? readVersion(this.chunks, this.pages[found.page]!.refs[found.slot]!) : undefined;
    if (expected !== undefined && (previous ?? 0) !== expected) return { previous, written: false };
    // Appending may add a chunk but moves no page: `found` stays valid.
    const ref = this.append(this.scratch, 0, keyLength, value, version);
    if (found.exact) {
      const page = this.writable(found.page);
      this.bury(page.refs[found.slot]!);
      page.refs[found.slot] = ref;
    } else {
      this.insert(found.page, found.slot, ref);
      this.count++;
    }
    this.maybeCompact();
    return { previous, written: true };
  }

  /** Removes the key; returns whether it existed. */
  delete(key: string): boolean {
    const length = this.encode(key);
    const found = locate(this.pages, this.chunks, this.scratch, 0, length);
    if (!found.exact) return false;
    const page = this.writable(found.page);
    this.bury(page.refs[found.slot]!);
    page.refs.copyWithin(found.slot, found.slot + 1, page.count);
    page.count--;
    if (page.count === 0) this.pages.splice(found.page, 1);
    this.count--;
    this.maybeCompact();
    return true;
  }

  /** A consistent cut; later writes do not change what it shows. O(pages + chunks). */
  view(): StoreView {
    const view = new StoreView(this.pages.slice(), this.chunks.slice(), this.count);
    this.epoch++;
    return view;
  }

  /** The UTF-8 bytes of `key`, into the scratch buffer; returns their length. */
  private encode(key: string): number {
    if (this.scratch.length < key.length * 3) this.scratch = Buffer.allocUnsafe(key.length * 3);
    return this.scratch.write(key, 0, 'utf8');
  }

  // ---------------------------------------------------------------- records

  private append(keySource: Buffer, keyStart: number, keyLength: number, value: Uint8Array, version: number): number {
    const size = RECORD_HEADER + keyLength + value.byteLength;
    let index: number;
    if (size > this.chunkBytes / 4) {
      // A large record in a chunk of its own, freed whole once dead.
      index = this.newChunk(size);
    } else {
      if (this.current < 0 || this.filled[this.current]! + size > this.chunkBytes) this.current = this.newChunk(this.chunkBytes);
      index = this.current;
    }
    const chunk = this.chunks[index]!;
    const at = this.filled[index]!;
    this.filled[index] = at + size;
    chunk.writeUInt32LE(keyLength, at);
    chunk.writeUInt32LE(value.byteLength, at + 4);
    chunk.writeUInt32LE(Math.floor(version / TWO_POW_32), at + 8);
    chunk.writeUInt32LE(version % TWO_POW_32, at + 12);
    keySource.copy(chunk, at + RECORD_HEADER, keyStart, keyStart + keyLength);
    chunk.set(value, at + RECORD_HEADER + keyLength);
    this.live[index]! += size;
    this.liveBytes += size;
    return index * CHUNK_SPAN + at;
  }

  /**
   * A chunk of `bytes`, at a free slot of the table if there is one: no live page refers to a freed
   * slot, and a view that still needs the chunk that was there has its own copy of the table.
   */
  private newChunk(bytes: number): number {
    const index = this.freeSlots.pop() ?? this.chunks.length;
    this.chunks[index] = Buffer.allocUnsafeSlow(bytes);
    this.live[index] = 0;
    this.filled[index] = 0;
    return index;
  }

  /** A record is dead: its bytes count as garbage until its chunk is compacted or freed. */
  private bury(ref: number): void {
    const index = Math.floor(ref / CHUNK_SPAN);
    const chunk = this.chunks[index]!;
    const at = ref - index * CHUNK_SPAN;
    const size = RECORD_HEADER + chunk.readUInt32LE(at) + chunk.readUInt32LE(at + 4);
    this.live[index]! -= size;
    this.liveBytes -= size;
    this.deadBytes += size;
    if (this.live[index] === 0 && index !== this.current) this.free(index);
  }

  private free(index: number): void {
    this.deadBytes -= this.filled[index]!;
    this.chunks[index] = undefined;
    this.filled[index] = 0;
    this.freeSlots.push(index);
  }

  /**
   * Once dead records are more than the live ones (and more than four chunks), moves the live
   * records of the emptiest chunk into the current one: one chunk per write at most, so a write
   * pays for a bounded amount of copying.
   */
  private maybeCompact(): void {
    if (this.deadBytes <= Math.max(this.liveBytes, 4 * this.chunkBytes)) return;
    let victim = -1;
    for (let i = 0; i < this.chunks.length; i++) {
      if (i === this.current || this.chunks[i] === undefined) continue;
      if (victim < 0 || this.live[i]! / this.filled[i]! < this.live[victim]! / this.filled[victim]!) victim = i;
    }
    if (victim < 0) return;
    const chunk = this.chunks[victim]!;
    const end = this.filled[victim]!;
    const liveBefore = this.live[victim]!;
    for (let at = 0; at < end; ) {
      const keyLength = chunk.readUInt32LE(at);
      const valueLength = chunk.readUInt32LE(at + 4);
      const size = RECORD_HEADER + keyLength + valueLength;
      const ref = victim * CHUNK_SPAN + at;
      const found = locate(this.pages, this.chunks, chunk, at + RECORD_HEADER, keyLength);
      if (found.exact && this.pages[found.page]!.refs[found.slot] === ref) {
        const version = chunk.readUInt32LE(at + 8) * TWO_POW_32 + chunk.readUInt32LE(at + 12);
        const value = chunk.subarray(at + RECORD_HEADER + keyLength, at + size);
        const moved = this.append(chunk, at + RECORD_HEADER, keyLength, value, version);
        const page = this.writable(found.page);
        page.refs[found.slot] = moved;
        this.live[victim]! -= size;
        this.liveBytes -= size;
      }
      at += size;
    }
    // Every live record of the victim now has a copy in another chunk: the whole victim is dead.
    this.deadBytes += liveBefore;
    this.free(victim);
    this.compacted++;
  }

  // ---------------------------------------------------------------- pages

  /** The page at `index`, copied first if a view may share it. */
  private writable(index: number): Page {
    const page = this.pages[index]!;
    if (page.epoch === this.epoch) return page;
    const copy: Page = { refs: new Float64Array(this.pageSlots), count: page.count, epoch: this.epoch };
    copy.refs.set(page.refs.subarray(0, page.count));
    this.pages[index] = copy;
    return copy;
  }

  private insert(pageIndex: number, slot: number, ref: number): void {
    if (this.pages.length === 0) {
      const page: Page = { refs: new Float64Array(this.pageSlots), count: 1, epoch: this.epoch };
      page.refs[0] = ref;
      this.pages.push(page);
      return;
    }
    // locate() points past the last page's end for a key above every key: the last page takes it.
    if (pageIndex === this.pages.length) {
      pageIndex--;
      slot = this.pages[pageIndex]!.count;
    }
    const page = this.writable(pageIndex);
    if (page.count < this.pageSlots) {
      page.refs.copyWithin(slot + 1, slot, page.count);
      page.refs[slot] = ref;
      page.count++;
      return;
    }
    // Full: split in two halves, then insert into the half the slot falls in.
    const half = this.pageSlots >> 1;
    const right: Page = { refs: new Float64Array(this.pageSlots), count: page.count - half, epoch: this.epoch };
    right.refs.set(page.refs.subarray(half, page.count));
    page.count = half;
    this.pages.splice(pageIndex + 1, 0, right);
    if (slot <= half) this.insert(pageIndex, slot, ref);
    else this.insert(pageIndex + 1, slot - half, ref);
  }
}

// ---------------------------------------------------------------- shared by the store and views

function readEntry(chunks: readonly (Buffer | undefined)[], ref: number): StoreEntry {
  const index = Math.floor(ref / CHUNK_SPAN);
  const chunk = chunks[index]!;
  const at = ref - index * CHUNK_SPAN;
  const keyLength = chunk.readUInt32LE(at);
  const valueLength = chunk.readUInt32LE(at + 4);
  const version = chunk.readUInt32LE(at + 8) * TWO_POW_32 + chunk.readUInt32LE(at + 12);
  const keyStart = at + RECORD_HEADER;
  return {
    key: chunk.toString('utf8', keyStart, keyStart + keyLength),
    value: chunk.subarray(keyStart + keyLength, keyStart + keyLength + valueLength),
    version,
  };
}

function readVersion(chunks: readonly (Buffer | undefined)[], ref: number): number {
  const index = Math.floor(ref / CHUNK_SPAN);
  const chunk = chunks[index]!;
  const at = ref - index * CHUNK_SPAN;
  return chunk.readUInt32LE(at + 8) * TWO_POW_32 + chunk.readUInt32LE(at + 12);
}

/** Compares key bytes `source[start, start + length)` with the key of record `ref`. */
function compareWith(chunks: readonly (Buffer | undefined)[], ref: number, source: Buffer, start: number, length: number): number {
  const index = Math.floor(ref / CHUNK_SPAN);
  const chunk = chunks[index]!;
  const at = ref - index * CHUNK_SPAN;
  const keyStart = at + RECORD_HEADER;
  const keyLength = chunk[at]! | (chunk[at + 1]! << 8) | (chunk[at + 2]! << 16) | (chunk[at + 3]! << 24);
  if (length > 64) return source.compare(chunk, keyStart, keyStart + keyLength, start, start + length);
  // Short keys: a loop the JIT compiles beats a call into C++ per comparison.
  const common = length < keyLength ? length : keyLength;
  for (let i = 0; i < common; i++) {
    const difference = source[start + i]! - chunk[keyStart + i]!;
    if (difference !== 0) return difference > 0 ? 1 : -1;
  }
  return length === keyLength ? 0 : length > keyLength ? 1 : -1;
}

/**
 * Where key bytes `source[start, start + length)` are or would go: the page and slot of the first
 * key ≥ it (page = pages.length when it is above every key), and whether that key is equal.
 */
function locate(
  pages: readonly Page[],
  chunks: readonly (Buffer | undefined)[],
  source: Buffer,
  start: number,
  length: number,
): { page: number; slot: number; exact: boolean } {
  if (pages.length === 0) return { page: 0, slot: 0, exact: false };
  // Keys written in increasing order (time-ordered ids, say) go after the last one: one comparison.
  const last = pages[pages.length - 1]!;
  if (compareWith(chunks, last.refs[last.count - 1]!, source, start, length) > 0) return { page: pages.length, slot: 0, exact: false };
  // The last page whose first key is ≤ the key (or the first page).
  let low = 0;
  let high = pages.length - 1;
  let page = 0;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (compareWith(chunks, pages[middle]!.refs[0]!, source, start, length) >= 0) {
      page = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  const { refs, count } = pages[page]!;
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const middle = (lo + hi) >> 1;
    if (compareWith(chunks, refs[middle]!, source, start, length) > 0) lo = middle + 1;
    else hi = middle;
  }
  if (lo === count) return page + 1 < pages.length ? { page: page + 1, slot: 0, exact: false } : { page: pages.length, slot: 0, exact: false };
  return { page, slot: lo, exact: compareWith(chunks, refs[lo]!, source, start, length) === 0 };
}
