// CRC-32 arithmetic beyond what node:zlib offers directly.
//
// zlib.crc32 computes the IEEE 802.3 CRC-32 (the one gzip, PNG and zip use) and can continue a
// running value, but it cannot answer "what is the CRC of bytes [a, b) of this buffer" without
// rereading those bytes. WAL recovery needs exactly that question answered for a great many
// overlapping ranges (see findValidFrameAfter in wal-format.ts): rereading would make it quadratic in
// the size of the damaged region. CRC-32 is linear over GF(2), so the CRC of a range follows from two
// prefix CRCs and the length between them; this file holds the few lines of polynomial arithmetic that
// make that possible (a port of zlib's multmodp / x2nmodp / crc32_combine).

import { crc32 } from 'node:zlib';

/** The CRC-32 polynomial, bit-reflected as zlib uses it (bit 31 is the coefficient of x^0). */
const POLY = 0xedb88320;

/** The polynomial 1 (x^0) in the reflected representation. */
const X0 = 0x80000000;

/** Product of two polynomials modulo POLY, both in the reflected representation. */
function multModP(a: number, b: number): number {
  let product = 0;
  let multiplicand = b;
  for (let mask = X0; mask !== 0; mask >>>= 1) {
    if ((a & mask) !== 0) product ^= multiplicand;
    multiplicand = (multiplicand & 1) !== 0 ? (multiplicand >>> 1) ^ POLY : multiplicand >>> 1;
  }
  return product >>> 0;
}

/** X2N[k] is x^(2^k) mod POLY, so any x^n is a product of at most 32 table entries. */
const X2N: readonly number[] = (() => {
  const table = [X0 >>> 1]; // x^1
  for (let k = 1; k < 32; k++) {
    const previous = table[k - 1] ?? 0;
    table.push(multModP(previous, previous));
  }
  return table;
})();

/**
 * Operators computed recently, by byte count. The WAL's torn-tail search asks for the same few
 * lengths over and over when damaged bytes repeat a pattern; the cache is cleared when full.
 */
const shiftOperators = new Map<number, number>();
const SHIFT_OPERATOR_CACHE_SIZE = 4096;

/** x^(8·byteCount) mod POLY: multiplying a CRC by it advances the CRC past byteCount bytes. */
function shiftOperator(byteCount: number): number {
  const cached = shiftOperators.get(byteCount);
  if (cached !== undefined) return cached;
  let operator = X0;
  let k = 3; // one byte is 8 = 2^3 bits
  for (let n = byteCount; n > 0; n = Math.floor(n / 2)) {
    if (n % 2 === 1) operator = multModP(X2N[k % 32] ?? X0, operator);
    k++;
  }
  if (shiftOperators.size >= SHIFT_OPERATOR_CACHE_SIZE) shiftOperators.clear();
  shiftOperators.set(byteCount, operator);
  return operator;
}

/**
 * CRC-32 of A‖B given CRC-32(A), CRC-32(B) and the length of B, without touching the bytes
 * (zlib's crc32_combine).
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(shiftOperator(lengthB), crcA) ^ crcB) >>> 0;
}

/**
 * CRC-32 of any byte range inside one region of a buffer, after a single pass over the region.
 *
 * It keeps the CRC of every prefix that ends on a multiple of `stride` bytes; the CRC of a prefix
 * ending elsewhere costs at most `stride` bytes of zlib.crc32, and the CRC of a range is derived from
 * the two prefix CRCs around it: prefix(end) = combine(prefix(start), range, end - start), solved for
 * range. Memory is 4 bytes per stride.
 */
export class RangeCrc {
  private readonly checkpoints: Uint32Array;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly regionStart: number,
    regionEnd: number,
    private readonly stride = 1024,
  ) {
    const count = Math.floor((regionEnd - regionStart) / stride) + 1;
    this.checkpoints = new Uint32Array(count);
    let running = 0;
    for (let i = 1; i < count; i++) {
      const from = regionStart + (i - 1) * stride;
      running = crc32(bytes.subarray(from, from + stride), running);
      this.checkpoints[i] = running;
    }
  }

  /** CRC-32 of bytes[start, end); both must lie in the region given to the constructor. */
  crc(start: number, end: number): number {
    const prefixStart = this.prefix(start);
    const prefixEnd = this.prefix(end);
    // prefixEnd = shift(prefixStart, length) ^ range, and XOR is its own inverse.
    return (prefixEnd ^ multModP(shiftOperator(end - start), prefixStart)) >>> 0;
  }

  /** CRC-32 of bytes[regionStart, end). */
  private prefix(end: number): number {
    const index = Math.floor((end - this.regionStart) / this.stride);
    const from = this.regionStart + index * this.stride;
    return crc32(this.bytes.subarray(from, end), this.checkpoints[index] ?? 0);
  }
}
