import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MalformedHeaders, NO_CONTENT_LENGTH, checkRequestHeaders, checkRequestTrailers } from './request-headers.js';

const GOOD = [':method', 'POST', ':scheme', 'http', ':path', '/concord.v1.KV/Put', ':authority', 'x', 'content-type', 'application/grpc', 'te', 'trailers'];

test('a gRPC request is well formed; its content-length is returned', () => {
  assert.equal(checkRequestHeaders(GOOD), NO_CONTENT_LENGTH);
  assert.equal(checkRequestHeaders([...GOOD, 'content-length', '42']), 42);
  // CONNECT has neither :scheme nor :path (§8.3).
  assert.equal(checkRequestHeaders([':method', 'CONNECT', ':authority', 'x:443']), NO_CONTENT_LENGTH);
  checkRequestTrailers(['x-checksum', 'abc']);
});

test('malformed requests (RFC 7540 §8.1.2) are refused with a reason', () => {
  const cases: [string, string[]][] = [
    ['uppercase', [...GOOD, 'X-Marker', '1']],
    ['not one of a request', [':status', '200', ...GOOD]],
    ['not one of a request', [':protocol', 'x', ...GOOD]],
    ['after a regular header', [...GOOD, ':authority', 'y']],
    ['a second :method', [...GOOD.slice(0, 2), ...GOOD]],
    ['a second :path', [':path', '/a', ...GOOD]],
    ['an empty :path', [':method', 'POST', ':scheme', 'http', ':path', '']],
    ['no :method', GOOD.slice(2)],
    ['no :scheme', [':method', 'POST', ':path', '/']],
    ['no :path', [':method', 'POST', ':scheme', 'http']],
    ['connection-specific header connection', [...GOOD, 'connection', 'keep-alive']],
    ['connection-specific header transfer-encoding', [...GOOD, 'transfer-encoding', 'chunked']],
    ['only "trailers"', [...GOOD.slice(0, -2), 'te', 'gzip']],
    ['content-length', [...GOOD, 'content-length', '-1']],
    ['content-length', [...GOOD, 'content-length', '1', 'content-length', '1']],
  ];
  for (const [reason, fields] of cases) {
    assert.throws(() => checkRequestHeaders(fields), (error: unknown) => error instanceof MalformedHeaders && error.message.includes(reason), `${reason}: ${fields.join(' ')}`);
  }
  assert.throws(() => checkRequestTrailers([':path', '/']), /in trailers/);
  assert.throws(() => checkRequestTrailers(['Grpc-Status', '0']), /uppercase/);
});
