// HPACK (RFC 7541): the header compression of HTTP/2, as the lean server needs it.
//
// Decoding is complete: indexed fields, literals with and without indexing, never-indexed
// literals, dynamic table size updates, Huffman-coded strings, and the dynamic table with its size
// accounting and eviction. Encoding is a small conforming subset, strings raw, names from the
// static table where one matches: encodeFields sends a whole static-table entry as its index and
// every other field as a literal without indexing, valid whatever the decoder's table holds;
// HpackAnswerEncoder also keeps a connection's dynamic table for the fields every answer repeats.
//
// Strings decode to JS strings in Latin-1, as Node's HTTP/2 does. A field taken from the dynamic
// table comes back as the same string objects each time it is referenced, so the headers a client
// repeats on every call (content-type, user-agent, te, :authority...) cost nothing to decode after
// the first.

/** An HPACK decoding failure: a COMPRESSION_ERROR of the connection (RFC 7540 §4.3). */
export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HpackError';
  }
}

/** RFC 7541 Appendix A. Index 1 is STATIC_TABLE[0]. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/**
 * The Huffman code of RFC 7541 Appendix B, by code length. The code is canonical: within one
 * length, codes are consecutive in symbol order, and each length's first code follows the last
 * of the shorter lengths shifted left, so the lengths alone determine every code (symbol 256 is EOS).
 */
const HUFFMAN_SYMBOLS_BY_LENGTH: Readonly<Record<number, string | readonly number[]>> = {
  5: '012aceiost',
  6: ' %-./3456789=A_bdfghlmnpru',
  7: ':BCDEFGHIJKLMNOPQRSTUVWYjkqvwxyz',
  8: '&*,;XZ',
  10: '!"()?',
  11: "'+|",
  12: '#>',
  13: [0, 36, 64, 91, 93, 126],
  14: [94, 125],
  15: [60, 96, 123],
  19: [92, 195, 208],
  20: [128, 130, 131, 162, 184, 194, 224, 226],
  21: [153, 161, 167, 172, 176, 177, 179, 209, 216, 217, 227, 229, 230],
  22: [129, 132, 133, 134, 136, 146, 154, 156, 160, 163, 164, 169, 170, 173, 178, 181, 185, 186, 187, 189, 190, 196, 198, 228, 232, 233],
  23: [1, 135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157, 158, 165, 166, 168, 174, 175, 180, 182, 183, 188, 191, 197, 231, 239],
  24: [9, 142, 144, 145, 148, 159, 171, 206, 215, 225, 236, 237],
  25: [199, 207, 234, 235],
  26: [192, 193, 200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242, 243, 255],
  27: [203, 204, 211, 212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252, 253, 254],
  28: [2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127, 220, 249],
  30: [10, 13, 22, 256],
};

const EOS = 256;

/**
 * The decoding tree, flattened: node n's children are TREE[2n] (bit 0) and TREE[2n + 1] (bit 1);
 * a child >= 0 is another node, a child < 0 is the leaf of symbol -child - 1, and 0 (only the root
 * has index 0, so no node points to it) means no code continues this way.
 */
const TREE: Int32Array = (() => {
  const codes: { symbol: number; length: number; code: number }[] = [];
  let code = 0;
  let previousLength = 0;
  const lengths = Object.keys(HUFFMAN_SYMBOLS_BY_LENGTH).map(Number).sort((a, b) => a - b);
  for (const length of lengths) {
    code <<= length - previousLength;
    previousLength = length;
    const group = HUFFMAN_SYMBOLS_BY_LENGTH[length]!;
    const symbols = typeof group === 'string' ? [...group].map((c) => c.charCodeAt(0)) : [...group];
    symbols.sort((a, b) => a - b);
    for (const symbol of symbols) codes.push({ symbol, length, code: code++ });
  }
  // A complete prefix code ends exactly at 2^length: this catches a mistyped table at startup.
  if (codes.length !== 257 || code !== 2 ** previousLength) throw new Error('hpack: the Huffman table is inconsistent');
  const tree: number[] = [0, 0];
  for (const { symbol, length, code: bits } of codes) {
    let node = 0;
    for (let i = length - 1; i > 0; i--) {
      const slot = 2 * node + ((bits >>> i) & 1);
      if (tree[slot] === 0) {
        tree[slot] = tree.length / 2;
        tree.push(0, 0);
      }
      node = tree[slot]!;
    }
    tree[2 * node + (bits & 1)] = -symbol - 1;
  }
  return Int32Array.from(tree);
})();

/** Where huffmanDecode puts the bytes of a string before making it one (a decoded string is at most 8/5 of its code). */
let scratch = new Uint8Array(1024);

/** Decodes a Huffman-coded string (RFC 7541 §5.2), checking the padding. */
export function huffmanDecode(input: Uint8Array, start: number, end: number): string {
  const most = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < most) scratch = new Uint8Array(most);
  const out = scratch;
  let length = 0;
  let node = 0;
  let depth = 0; // bits consumed since the last complete symbol
  let allOnes = true; // whether those bits were all 1 (valid padding is a prefix of EOS)
  for (let i = start; i < end; i++) {
    const byte = input[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      const next = TREE[2 * node + b]!;
      depth++;
      allOnes &&= b === 1;
      if (next < 0) {
        const symbol = -next - 1;
        if (symbol === EOS) throw new HpackError('a Huffman-coded string contains EOS');
        out[length++] = symbol;
        node = 0;
        depth = 0;
        allOnes = true;
      } else if (next === 0) {
        throw new HpackError('an invalid Huffman code');
      } else {
        node = next;
      }
    }
  }
  if (depth > 7 || !allOnes) throw new HpackError('invalid padding at the end of a Huffman-coded string');
  return latin1(out, 0, length);
}

/** Octets an entry takes in the dynamic table (RFC 7541 §4.1). */
function entrySize(name: string, value: string): number {
  return name.length + value.length + 32;
}

/**
 * The decoding side of one connection. `decode` takes a whole header block (HEADERS plus its
 * CONTINUATION frames, joined) and returns its fields as [name, value, name, value, ...].
 */
export class HpackDecoder {
  /** Newest entry last. */
  private readonly names: string[] = [];
  private readonly values: string[] = [];
  private size = 0;
  private maxSize: number;

  /** `settingsMaxSize`: the SETTINGS_HEADER_TABLE_SIZE this side announced (4096 unless changed). */
  constructor(private readonly settingsMaxSize = 4096) {
    this.maxSize = settingsMaxSize;
  }

  // The block being decoded and the position in it (set by decode, read by the helpers).
  private block: Uint8Array = new Uint8Array(0);
  private pos = 0;

  decode(block: Uint8Array): string[] {
    const fields: string[] = [];
    this.block = block;
    this.pos = 0;
    let fieldSeen = false;
    const length = block.length;
    while (this.pos < length) {
      const first = block[this.pos]!;
      if ((first & 0x80) !== 0) {
        const index = this.integer(7);
        fields.push(this.name(index), this.value(index));
        fieldSeen = true;
      } else if ((first & 0xc0) === 0x40) {
        const index = this.integer(6);
        const name = index === 0 ? this.string() : this.name(index);
        const value = this.string();
        fields.push(name, value);
        this.insert(name, value);
        fieldSeen = true;
      } else if ((first & 0xe0) === 0x20) {
        // A size update is only allowed at the start of a block (RFC 7541 §4.2).
        if (fieldSeen) throw new HpackError('a dynamic table size update after a header field');
        const size = this.integer(5);
        if (size > this.settingsMaxSize) throw new HpackError(`a dynamic table size update to ${size}, above the ${this.settingsMaxSize} allowed`);
        this.maxSize = size;
        this.evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const index = this.integer(4);
        const name = index === 0 ? this.string() : this.name(index);
        fields.push(name, this.string());
        fieldSeen = true;
      }
    }
    this.block = EMPTY;
    return fields;
  }

  /** An integer with a `prefixBits`-bit prefix (RFC 7541 §5.1). */
  private integer(prefixBits: number): number {
    const { block } = this;
    const mask = (1 << prefixBits) - 1;
    let value = block[this.pos++]! & mask;
    if (value < mask) return value;
    let shift = 0;
    for (;;) {
      if (this.pos >= block.length) throw new HpackError('a header block ends inside an integer');
      const byte = block[this.pos++]!;
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if ((byte & 0x80) === 0) break;
      if (shift > 28) throw new HpackError('an integer too large');
    }
    return value;
  }

  /** A string literal, raw or Huffman-coded (RFC 7541 §5.2). */
  private string(): string {
    const { block } = this;
    if (this.pos >= block.length) throw new HpackError('a header block ends before a string');
    const huffman = (block[this.pos]! & 0x80) !== 0;
    const size = this.integer(7);
    const start = this.pos;
    const end = start + size;
    if (end > block.length) throw new HpackError('a string runs past the end of the header block');
    this.pos = end;
    return huffman ? huffmanDecode(block, start, end) : latin1(block, start, end);
  }

  private name(index: number): string {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]![0];
    const at = this.names.length - (index - STATIC_TABLE.length);
    if (at < 0) throw new HpackError(`index ${index} is beyond the tables`);
    return this.names[at]!;
  }

  private value(index: number): string {
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]![1];
    return this.values[this.names.length - (index - STATIC_TABLE.length)]!;
  }

  private insert(name: string, value: string): void {
    const size = entrySize(name, value);
    if (size > this.maxSize) {
      // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
      this.names.length = 0;
      this.values.length = 0;
      this.size = 0;
      return;
    }
    this.evict(size);
    this.names.push(name);
    this.values.push(value);
    this.size += size;
  }

  /** Evicts the oldest entries until `incoming` more octets fit. */
  private evict(incoming: number): void {
    let drop = 0;
    while (this.size + incoming > this.maxSize && drop < this.names.length) {
      this.size -= entrySize(this.names[drop]!, this.values[drop]!);
      drop++;
    }
    for (; drop > 0; drop--) {
      this.names.shift();
      this.values.shift();
    }
  }
}

const EMPTY = new Uint8Array(0);

/** Buffer's Latin-1 decoder, which takes any Uint8Array and allocates nothing but the string. */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, start: number, end: number): string }).latin1Slice;

function latin1(bytes: Uint8Array, start: number, end: number): string {
  return latin1Slice.call(bytes, start, end);
}

/** Static table index of each name (its first entry). */
const STATIC_NAME_INDEX = new Map<string, number>();
/** Fields that are whole static-table entries (`:status: 200`...), keyed by name and value. */
const STATIC_FIELD_INDEX = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!STATIC_NAME_INDEX.has(name)) STATIC_NAME_INDEX.set(name, i + 1);
  if (value !== '') STATIC_FIELD_INDEX.set(`${name}\n${value}`, i + 1);
});

function pushInteger(out: number[], value: number, prefixBits: number, firstByteFlags: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByteFlags | value);
    return;
  }
  out.push(firstByteFlags | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function pushString(out: number[], text: string): void {
  pushInteger(out, text.length, 7, 0);
  for (let i = 0; i < text.length; i++) out.push(text.charCodeAt(i) & 0xff);
}

/**
 * A header block for `fields` ([name, value, ...], names lowercase, values Latin-1): each field a
 * static-table index or a literal without indexing, which any decoder accepts whatever its dynamic
 * table holds.
 */
export function encodeFields(fields: readonly string[]): Buffer {
  const out: number[] = [];
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    // A whole static entry goes as its index. Besides the bytes, a Node client then hands out the
    // value as a string it keeps for every answer, where a literal costs it a new external string.
    const field = STATIC_FIELD_INDEX.get(`${name}\n${value}`);
    if (field !== undefined) {
      pushInteger(out, field, 7, 0x80);
      continue;
    }
    pushLiteral(out, name, value, false);
  }
  return Buffer.from(out);
}

/** A literal field, with incremental indexing (0x40, 6-bit name index) or without (0x00, 4-bit). */
function pushLiteral(out: number[], name: string, value: string, insert: boolean): void {
  const nameIndex = STATIC_NAME_INDEX.get(name);
  if (nameIndex !== undefined) {
    pushInteger(out, nameIndex, insert ? 6 : 4, insert ? 0x40 : 0);
  } else {
    out.push(insert ? 0x40 : 0);
    pushString(out, name);
  }
  pushString(out, value);
}

/** RFC 7541 §4.1: an entry counts its name's and value's octets plus 32. */
const ENTRY_OVERHEAD = 32;
/** The dynamic table size a decoder starts with (SETTINGS_HEADER_TABLE_SIZE's initial value). */
const DEFAULT_TABLE_SIZE = 4096;
/** Dynamic table indexes follow the 61 static entries. */
const FIRST_DYNAMIC_INDEX = STATIC_TABLE.length + 1;

/**
 * The encoding side of one connection's dynamic table, for the few fields a server sends on every
 * answer (`content-type`, `grpc-status: 0`): the first block that carries one inserts it, later
 * blocks send it as a one-byte index. For a Node client that is more than bytes: it hands a header
 * value to JavaScript as an external string over the decoder's buffer, and a literal's buffer is
 * allocated for that answer and freed when a full collection finds the string dead, where an
 * indexed value's buffer is the table's, shared, only released.
 *
 * Follows the decoder's SETTINGS_HEADER_TABLE_SIZE: a smaller size than the one in use is signalled
 * by a dynamic table size update at the start of the next header block, as the decoder then
 * requires (RFC 7541 §4.2; nghttp2 fails the connection without it), and evicts what no longer
 * fits. A larger one is not taken up: the table never needs more than a few entries.
 *
 * Blocks refer to the table as it is when they are made, so each must be written before the next
 * is made: `encode` and `withPendingUpdate` are for the moment of writing. Blocks made ahead of
 * time (trailers waiting for a flow-control window) are literals without indexing (encodeFields),
 * valid whatever the table holds, and get any pending size update through `withPendingUpdate`.
 */
export class HpackAnswerEncoder {
  private maxSize = DEFAULT_TABLE_SIZE;
  private pendingUpdate: number | undefined;
  /** Newest first: entry i has index FIRST_DYNAMIC_INDEX + i. */
  private readonly entries: { name: string; value: string; size: number }[] = [];
  private size = 0;
  /** Blocks that insert nothing and carry no update, by field list: valid until the table changes. */
  private readonly stable = new Map<readonly string[], Buffer>();

  /** The decoder announced SETTINGS_HEADER_TABLE_SIZE = `value` in a SETTINGS frame. */
  decoderTableSize(value: number): void {
    if (value >= this.maxSize) return;
    this.maxSize = value;
    this.pendingUpdate = value;
    while (this.size > this.maxSize) this.size -= this.entries.pop()!.size;
    this.stable.clear();
  }

  /** `block` (made by encodeFields) preceded by the size update the decoder waits for, if one is. */
  withPendingUpdate(block: Buffer): Buffer {
    if (this.pendingUpdate === undefined) return block;
    const out: number[] = [];
    this.takeUpdate(out);
    return Buffer.concat([Buffer.from(out), block]);
  }

  /**
   * A block for `fields` ([name, value, ...], a list kept for the connection's life: results are
   * cached by its identity): whole static entries and fields in the table as indexes, other fields
   * inserted while they fit, the rest as literals without indexing.
   */
  encode(fields: readonly string[]): Buffer {
    if (this.pendingUpdate === undefined) {
      const cached = this.stable.get(fields);
      if (cached !== undefined) return cached;
    }
    const out: number[] = [];
    let reusable = !this.takeUpdate(out);
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i]!;
      const value = fields[i + 1]!;
      const field = STATIC_FIELD_INDEX.get(`${name}\n${value}`) ?? this.dynamicIndex(name, value);
      if (field !== undefined) {
        pushInteger(out, field, 7, 0x80);
        continue;
      }
      const size = name.length + value.length + ENTRY_OVERHEAD;
      const insert = this.size + size <= this.maxSize;
      pushLiteral(out, name, value, insert);
      if (insert) {
        this.entries.unshift({ name, value, size });
        this.size += size;
        this.stable.clear();
        reusable = false;
      }
    }
    const block = Buffer.from(out);
    if (reusable) this.stable.set(fields, block);
    return block;
  }

  private dynamicIndex(name: string, value: string): number | undefined {
    for (let i = 0; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      if (entry.name === name && entry.value === value) return FIRST_DYNAMIC_INDEX + i;
    }
    return undefined;
  }

  /** Writes the pending size update into `out`; whether there was one. */
  private takeUpdate(out: number[]): boolean {
    if (this.pendingUpdate === undefined) return false;
    pushInteger(out, this.pendingUpdate, 5, 0x20);
    this.pendingUpdate = undefined;
    return true;
  }
}
