// Every check throws ServiceError(INVALID_ARGUMENT) with a message naming the field and the limit,
// e.g. "key: must be at most 4096 bytes of UTF-8 (got 5000)", so a client knows what to fix.
import { status } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import { ServiceError } from './errors.js';

export const MAX_KEY_BYTES = 4096;
export const MAX_VALUE_BYTES = 1024 * 1024;
export const DEFAULT_SCAN_LIMIT = 1000;
export const MAX_SCAN_LIMIT = 10000;

function invalid(message: string): ServiceError {
  return new ServiceError(status.INVALID_ARGUMENT, message);
}

/** Non-empty, at most MAX_KEY_BYTES of UTF-8. */
export function validateKey(key: string, field = 'key'): void {
  if (key.length === 0) throw invalid(`${field}: must not be empty`);
  checkKeyLength(key, field);
}

/** The length bound alone, for fields where empty means "unbounded" (scan range ends, prefixes). */
function checkKeyLength(key: string, field: string): void {
  // A UTF-16 code unit encodes to at most 3 bytes, so short keys skip the byte count.
  if (key.length * 3 <= MAX_KEY_BYTES) return;
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) throw invalid(`${field}: must be at most ${MAX_KEY_BYTES} bytes of UTF-8 (got ${bytes})`);
}

/** At most MAX_VALUE_BYTES. */
export function validateValue(value: Uint8Array, field = 'value'): void {
  if (value.byteLength > MAX_VALUE_BYTES) {
    throw invalid(`${field}: must be at most ${MAX_VALUE_BYTES} bytes (got ${value.byteLength})`);
  }
}

/** 0 means DEFAULT_SCAN_LIMIT; otherwise 1..MAX_SCAN_LIMIT. Returns the effective limit. */
export function validateScanLimit(limit: number, field = 'limit'): number {
  if (limit === 0) return DEFAULT_SCAN_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SCAN_LIMIT) {
    throw invalid(`${field}: must be between 1 and ${MAX_SCAN_LIMIT}, or 0 for the default of ${DEFAULT_SCAN_LIMIT} (got ${limit})`);
  }
  return limit;
}

/**
 * Known enum value; UNSPECIFIED becomes LINEARIZABLE. Rejects unknown numbers: ts-proto's binary
 * decoder keeps an unknown enum number as the raw number, its fromJSON turns it into
 * UNRECOGNIZED (-1).
 */
export function validateConsistency(consistency: ReadConsistency | number, field = 'consistency'): ReadConsistency {
  switch (consistency) {
    case ReadConsistency.READ_CONSISTENCY_UNSPECIFIED:
    case ReadConsistency.READ_CONSISTENCY_LINEARIZABLE:
      return ReadConsistency.READ_CONSISTENCY_LINEARIZABLE;
    case ReadConsistency.READ_CONSISTENCY_SERIALIZABLE:
      return ReadConsistency.READ_CONSISTENCY_SERIALIZABLE;
    default: {
      const shown = consistency === ReadConsistency.UNRECOGNIZED ? 'UNRECOGNIZED' : String(consistency);
      throw invalid(`${field}: unknown value ${shown} (use LINEARIZABLE or SERIALIZABLE)`);
    }
  }
}

/** prefix and start_key/end_key are mutually exclusive; start_key < end_key when both set; each at most MAX_KEY_BYTES. */
export function validateScanRange(range: { prefix: string; startKey: string; endKey: string }): void {
  checkKeyLength(range.prefix, 'prefix');
  checkKeyLength(range.startKey, 'start_key');
  checkKeyLength(range.endKey, 'end_key');
  if (range.prefix !== '' && (range.startKey !== '' || range.endKey !== '')) {
    throw invalid('prefix: must not be combined with start_key/end_key (scan either a prefix or a range)');
  }
  if (range.startKey !== '' && range.endKey !== '' && compareKeys(range.startKey, range.endKey) >= 0) {
    throw invalid(`start_key: must be less than end_key (got start_key ${JSON.stringify(range.startKey)} >= end_key ${JSON.stringify(range.endKey)})`);
  }
}

/**
 * Orders keys as the store does: by their UTF-8 bytes. JavaScript's `<` compares UTF-16 code units,
 * which disagrees with byte order for characters beyond the BMP.
 */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
