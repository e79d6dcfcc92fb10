// Small 32-bit hashes for memoization keys. Quality matters only for spreading the memo table.

/** A 32-bit finalizer (MurmurHash3's fmix32 with splitmix constants). */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) | 0;
}

/** FNV-1a over UTF-16 code units. */
export function stringHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h | 0;
}

/** A number (any double, e.g. a version beyond 2^32) folded into a hash. */
export function mixNumber(h: number, x: number): number {
  const low = x | 0;
  const high = Number.isSafeInteger(x) ? Math.floor(x / 2 ** 32) | 0 : stringHash(String(x));
  return mix32(mix32(h ^ low) ^ high);
}
