import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, status } from '@grpc/grpc-js';
import { ServiceError, isUnexpectedError, toStatusObject } from './errors.js';

test('a ServiceError keeps its code, message and metadata', () => {
  const error = new ServiceError(status.FAILED_PRECONDITION, 'not the leader', {
    'concord-reason': 'NOT_LEADER',
    'concord-leader': '127.0.0.1:7001',
  });
  const statusObject = toStatusObject(error);
  assert.equal(statusObject.code, status.FAILED_PRECONDITION);
  assert.equal(statusObject.details, 'not the leader');
  assert.deepEqual(statusObject.metadata.get('concord-reason'), ['NOT_LEADER']);
  assert.deepEqual(statusObject.metadata.get('concord-leader'), ['127.0.0.1:7001']);
  assert.equal(isUnexpectedError(error), false);
});

test('an error relayed from a downstream gRPC call keeps its code, details and trailers', () => {
  const trailers = new Metadata();
  trailers.set('concord-reason', 'WRONG_SHARD');
  trailers.set('concord-ring-epoch', '7');
  const relayed = Object.assign(new Error('3 INVALID_ARGUMENT: key: must not be empty'), {
    code: status.INVALID_ARGUMENT,
    details: 'key: must not be empty',
    metadata: trailers,
  });
  const statusObject = toStatusObject(relayed);
  assert.equal(statusObject.code, status.INVALID_ARGUMENT);
  assert.equal(statusObject.details, 'key: must not be empty');
  assert.deepEqual(statusObject.metadata.get('concord-reason'), ['WRONG_SHARD']);
  assert.deepEqual(statusObject.metadata.get('concord-ring-epoch'), ['7']);
  assert.equal(isUnexpectedError(relayed), false);
});

test('relayed trailers drop transport entries', () => {
  const trailers = new Metadata();
  trailers.set('content-type', 'application/grpc');
  trailers.set('concord-reason', 'NOT_LEADER');
  const statusObject = toStatusObject({ code: status.UNAVAILABLE, details: 'leader unknown', metadata: trailers });
  assert.deepEqual(Object.keys(statusObject.metadata.getMap()), ['concord-reason']);
});

test('anything else becomes INTERNAL "internal error" without its message', () => {
  for (const thrown of [
    new Error('ENOENT: /var/lib/concord/wal/0001.log'),
    new TypeError('cannot read properties of undefined'),
    'a string',
    undefined,
    { code: 'ECONNRESET', details: 'socket hang up' },
    { code: 99, details: 'not a status code' },
    { code: status.OK, details: 'ok is not a failure' },
  ]) {
    const statusObject = toStatusObject(thrown);
    assert.equal(statusObject.code, status.INTERNAL);
    assert.equal(statusObject.details, 'internal error');
    assert.deepEqual(statusObject.metadata.getMap(), {});
    assert.equal(isUnexpectedError(thrown), true);
  }
});

test('metadata grpc-js would refuse is dropped instead of losing the answer', () => {
  const error = new ServiceError(status.ABORTED, 'version mismatch', { 'bad key!': 'x', 'concord-blob-bin': 'not a buffer', 'concord-reason': 'CAS' });
  const statusObject = toStatusObject(error);
  assert.equal(statusObject.code, status.ABORTED);
  assert.deepEqual(Object.keys(statusObject.metadata.getMap()), ['concord-reason']);
});
