// The one key order of the store: by UTF-8 bytes, which equals Unicode code point order. Clients in
// any language (Go, Rust, Python) scan and merge in this order, and runtime's validateScanRange
// checks start_key < end_key with it. JavaScript's `<` compares UTF-16 code units instead, which
// disagrees for characters above U+FFFF (stored as surrogates 0xD800..0xDFFF) versus U+E000..U+FFFF.

/**
 * Compares two keys by code point without encoding them: the BTree calls this O(log n) times per
 * lookup, so allocating two Buffers per call would dominate a scan.
 */
export function compareKeys(a: string, b: string): number {
  const common = Math.min(a.length, b.length);
  for (let i = 0; i < common; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Only when both units are >= 0xD800 can UTF-16 order differ from code point order: a
    // surrogate (part of a code point >= U+10000) must sort after U+E000..U+FFFF.
    if (x >= 0xd800 && y >= 0xd800) return rankHighUnit(x) - rankHighUnit(y);
    return x - y;
  }
  return a.length - b.length;
}

/** Moves surrogates above U+E000..U+FFFF, keeping the order within each group. */
function rankHighUnit(unit: number): number {
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}
