import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { ReadConsistency, readConsistencyFromJSON } from '@concord/proto/common';
import { ServiceError } from './errors.js';
import {
  DEFAULT_SCAN_LIMIT,
  MAX_KEY_BYTES,
  MAX_SCAN_LIMIT,
  MAX_VALUE_BYTES,
  validateConsistency,
  validateKey,
  validateScanLimit,
  validateScanRange,
  validateValue,
} from './limits.js';

function invalidArgument(message: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof ServiceError);
    assert.equal(error.code, status.INVALID_ARGUMENT);
    assert.equal(error.message, message);
    return true;
  };
}

test('validateKey: empty and oversized keys name the field and the limit', () => {
  assert.throws(() => validateKey(''), invalidArgument('key: must not be empty'));
  assert.throws(() => validateKey('', 'compare[2].key'), invalidArgument('compare[2].key: must not be empty'));
  assert.throws(() => validateKey('k'.repeat(5000)), invalidArgument('key: must be at most 4096 bytes of UTF-8 (got 5000)'));
  validateKey('k'.repeat(MAX_KEY_BYTES));
  validateKey('user/42');
});

test('validateKey counts UTF-8 bytes, not characters', () => {
  // 'é' is 2 bytes: 2049 of them are 4098 bytes although only 2049 characters.
  assert.throws(() => validateKey('é'.repeat(2049)), invalidArgument('key: must be at most 4096 bytes of UTF-8 (got 4098)'));
  validateKey('é'.repeat(2048));
  validateKey('€'.repeat(1365));
});

test('validateValue: at most 1 MiB; empty is a valid value', () => {
  assert.throws(() => validateValue(new Uint8Array(2_000_000)), invalidArgument('value: must be at most 1048576 bytes (got 2000000)'));
  assert.throws(() => validateValue(new Uint8Array(MAX_VALUE_BYTES + 1), 'puts[0].value'), invalidArgument('puts[0].value: must be at most 1048576 bytes (got 1048577)'));
  validateValue(new Uint8Array(MAX_VALUE_BYTES));
  validateValue(new Uint8Array(0));
});

test('validateScanLimit: 0 is the default, otherwise 1..10000', () => {
  assert.equal(validateScanLimit(0), DEFAULT_SCAN_LIMIT);
  assert.equal(validateScanLimit(1), 1);
  assert.equal(validateScanLimit(MAX_SCAN_LIMIT), MAX_SCAN_LIMIT);
  assert.throws(() => validateScanLimit(20000), invalidArgument('limit: must be between 1 and 10000, or 0 for the default of 1000 (got 20000)'));
  assert.throws(() => validateScanLimit(-1), invalidArgument('limit: must be between 1 and 10000, or 0 for the default of 1000 (got -1)'));
});

test('validateConsistency: unspecified means linearizable; unknown numbers are rejected', () => {
  assert.equal(validateConsistency(ReadConsistency.READ_CONSISTENCY_UNSPECIFIED), ReadConsistency.READ_CONSISTENCY_LINEARIZABLE);
  assert.equal(validateConsistency(ReadConsistency.READ_CONSISTENCY_LINEARIZABLE), ReadConsistency.READ_CONSISTENCY_LINEARIZABLE);
  assert.equal(validateConsistency(ReadConsistency.READ_CONSISTENCY_SERIALIZABLE), ReadConsistency.READ_CONSISTENCY_SERIALIZABLE);
  // The binary decoder keeps an unknown number as is.
  assert.throws(() => validateConsistency(7), invalidArgument('consistency: unknown value 7 (use LINEARIZABLE or SERIALIZABLE)'));
  // fromJSON maps anything unknown to UNRECOGNIZED (-1).
  assert.throws(
    () => validateConsistency(readConsistencyFromJSON('READ_CONSISTENCY_STRONG')),
    invalidArgument('consistency: unknown value UNRECOGNIZED (use LINEARIZABLE or SERIALIZABLE)'),
  );
});

test('validateScanRange: prefix excludes start/end; start must be below end', () => {
  validateScanRange({ prefix: 'user/', startKey: '', endKey: '' });
  validateScanRange({ prefix: '', startKey: 'a', endKey: 'b' });
  validateScanRange({ prefix: '', startKey: 'a', endKey: '' });
  validateScanRange({ prefix: '', startKey: '', endKey: 'b' });
  validateScanRange({ prefix: '', startKey: '', endKey: '' });
  const mixed = invalidArgument('prefix: must not be combined with start_key/end_key (scan either a prefix or a range)');
  assert.throws(() => validateScanRange({ prefix: 'user/', startKey: 'a', endKey: '' }), mixed);
  assert.throws(() => validateScanRange({ prefix: 'user/', startKey: '', endKey: 'z' }), mixed);
  assert.throws(
    () => validateScanRange({ prefix: '', startKey: 'b', endKey: 'a' }),
    invalidArgument('start_key: must be less than end_key (got start_key "b" >= end_key "a")'),
  );
  assert.throws(
    () => validateScanRange({ prefix: '', startKey: 'a', endKey: 'a' }),
    invalidArgument('start_key: must be less than end_key (got start_key "a" >= end_key "a")'),
  );
});

test('validateScanRange orders keys by UTF-8 bytes', () => {
  // U+FFFF sorts after U+10000 in UTF-16 code units but before it in UTF-8 bytes.
  validateScanRange({ prefix: '', startKey: '\uffff', endKey: '\u{10000}' });
  assert.throws(() => validateScanRange({ prefix: '', startKey: '\u{10000}', endKey: '\uffff' }));
});

test('validateScanRange bounds each key', () => {
  const long = 'k'.repeat(5000);
  assert.throws(() => validateScanRange({ prefix: long, startKey: '', endKey: '' }), invalidArgument('prefix: must be at most 4096 bytes of UTF-8 (got 5000)'));
  assert.throws(() => validateScanRange({ prefix: '', startKey: long, endKey: '' }), invalidArgument('start_key: must be at most 4096 bytes of UTF-8 (got 5000)'));
  assert.throws(() => validateScanRange({ prefix: '', startKey: '', endKey: long }), invalidArgument('end_key: must be at most 4096 bytes of UTF-8 (got 5000)'));
});
