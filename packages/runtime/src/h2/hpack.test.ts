import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { HpackAnswerEncoder, HpackDecoder, HpackError, encodeFields, huffmanDecode } from './hpack.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

/** Pairs of a decoded block, for readable assertions. */
function pairs(fields: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < fields.length; i += 2) out.push([fields[i]!, fields[i + 1]!]);
  return out;
}

test('decodes the request examples of RFC 7541 (C.3 raw, C.4 Huffman), dynamic table included', () => {
  for (const blocks of [
    ['828684410f7777772e6578616d706c652e636f6d', '828684be58086e6f2d6361636865', '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565'],
    ['828684418cf1e3c2e5f23a6ba0ab90f4ff', '828684be5886a8eb10649cbf', '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf'],
  ]) {
    const decoder = new HpackDecoder();
    assert.deepEqual(pairs(decoder.decode(hex(blocks[0]!))), [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
    ]);
    assert.deepEqual(pairs(decoder.decode(hex(blocks[1]!))), [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
      ['cache-control', 'no-cache'],
    ]);
    assert.deepEqual(pairs(decoder.decode(hex(blocks[2]!))), [
      [':method', 'GET'],
      [':scheme', 'https'],
      [':path', '/index.html'],
      [':authority', 'www.example.com'],
      ['custom-key', 'custom-value'],
    ]);
  }
});

test('decodes what node:http2 sends: every byte a header value may hold, Huffman-coded, and the table across requests', async () => {
  // Each value is mostly common letters, so the encoder chooses Huffman, with one byte of interest.
  const allowed = [9, ...Array.from({ length: 0x100 - 0x20 }, (_, i) => i + 0x20).filter((b) => b !== 0x7f)];
  const headers: Record<string, string> = {};
  for (const [i, byte] of allowed.entries()) headers[`x-h${i}`] = `aaaaaaaaaaaaaaaaaaaa${String.fromCharCode(byte)}eeee`;
  const blocks: Buffer[] = [];
  const server = net.createServer((socket) => {
    let buffer = Buffer.alloc(0);
    let position = 24; // after the client preface
    let parts: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= position + 9) {
        const length = buffer.readUIntBE(position, 3);
        const type = buffer[position + 3]!;
        const flags = buffer[position + 4]!;
        if (buffer.length < position + 9 + length) break;
        let payload = buffer.subarray(position + 9, position + 9 + length);
        if (type === 1 && (flags & 0x20) !== 0) payload = payload.subarray(5);
        if (type === 1 || type === 9) {
          parts.push(payload);
          if ((flags & 0x4) !== 0) {
            blocks.push(Buffer.concat(parts));
            parts = [];
          }
        }
        position += 9 + length;
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  client.on('error', () => undefined);
  try {
    // All of them (more than the 4 KiB table holds), then twice a few that fit in the table.
    const few = Object.fromEntries(Object.entries(headers).slice(0, 10));
    const sent = [headers, few, few];
    for (const [i, set] of sent.entries()) client.request({ ':method': 'POST', ':path': `/${i}`, ...set }).on('error', () => undefined);
    const deadline = Date.now() + 5000;
    while (blocks.length < sent.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(blocks.length, sent.length, 'every header block captured');
    const decoder = new HpackDecoder(4096);
    for (const [i, block] of blocks.entries()) {
      const decoded = new Map(pairs(decoder.decode(block)));
      assert.equal(decoded.get(':path'), `/${i}`);
      for (const [name, value] of Object.entries(sent[i]!)) assert.equal(decoded.get(name), value, name);
      assert.equal(decoded.size, Object.keys(sent[i]!).length + 4, 'no more fields than sent (with :method, :path, :scheme, :authority)');
    }
    // The third block is much smaller: it refers to what the second put in the dynamic table.
    assert.ok(blocks[2]!.length < blocks[1]!.length / 2, `${blocks[2]!.length} vs ${blocks[1]!.length} bytes`);
  } finally {
    client.destroy();
    server.close();
  }
});

test('rejects malformed blocks with an HpackError', () => {
  const cases: [string, string, RegExp][] = [
    ['index 0', '80', /index 0/],
    ['an index beyond the tables', 'be', /beyond the tables/],
    ['a truncated integer', '7fff', /inside an integer/],
    ['a string past the end', '0003616263056162', /past the end/], // value of 5 bytes, 2 there
    ['a size update above the limit', '3fe11f', /size update to 4096|above the/],
    ['a size update after a field', '8220', /after a header field/],
    ['Huffman padding that is not all ones', '018100', /invalid padding/], // "0", then 000
    ['Huffman padding longer than 7 bits', '0182ffff', /invalid padding/],
  ];
  for (const [what, block, message] of cases) {
    assert.throws(() => new HpackDecoder(2048).decode(hex(block)), (error: unknown) => error instanceof HpackError && message.test(error.message), what);
  }
  // EOS (30 ones) inside a string is an error, not a symbol.
  assert.throws(() => huffmanDecode(hex('ffffffff'), 0, 4), /EOS/);
});

test('evicts the oldest entries past the table size, and a size update can empty the table', () => {
  const decoder = new HpackDecoder(100);
  const literal = (name: string, value: string): number[] => [0x40, name.length, ...Buffer.from(name), value.length, ...Buffer.from(value)];
  // Each entry takes 32 + 2 + 10 = 44 octets: two fit in 100, the third evicts the first.
  decoder.decode(Buffer.from([...literal('a1', '0123456789'), ...literal('a2', '0123456789'), ...literal('a3', '0123456789')]));
  assert.deepEqual(pairs(decoder.decode(hex('be bf'))), [
    ['a3', '0123456789'],
    ['a2', '0123456789'],
  ]);
  assert.throws(() => decoder.decode(hex('c0')), /beyond the tables/);
  decoder.decode(hex('20')); // size update to 0
  assert.throws(() => decoder.decode(hex('be')), /beyond the tables/);
});

test('encodes fields any decoder reads back, long values and unknown names included', () => {
  const fields = [':status', '200', 'content-type', 'application/grpc', 'grpc-message', 'x'.repeat(300), 'x-custom-bin', 'AAEC', 'grpc-status', '0'];
  const decoder = new HpackDecoder();
  assert.deepEqual(decoder.decode(encodeFields(fields)), fields);
  // Literals without indexing leave the decoder's table as it was: decoding twice gives the same.
  assert.deepEqual(decoder.decode(encodeFields(fields)), fields);
});

test('a field that is a whole static-table entry is encoded as its index, one byte', () => {
  assert.deepEqual([...encodeFields([':status', '200'])], [0x88]);
  assert.deepEqual([...encodeFields([':method', 'POST'])], [0x83]);
  // Only the name matches: name index 8 (":status"), then the value as a literal.
  assert.deepEqual([...encodeFields([':status', '201'])], [0x08, 3, 0x32, 0x30, 0x31]);
  const fields = [':status', '200', 'content-type', 'application/grpc+proto'];
  assert.deepEqual(new HpackDecoder().decode(encodeFields(fields)), fields);
});

const OK_HEADERS = Object.freeze([':status', '200', 'content-type', 'application/grpc+proto']);
const OK_TRAILERS = Object.freeze(['grpc-status', '0']);

test('the answer encoder inserts a repeated field once, then sends it as an index', () => {
  const encoder = new HpackAnswerEncoder();
  const decoder = new HpackDecoder();
  const first = encoder.encode(OK_HEADERS);
  assert.equal(first[1], 0x40 | 31, 'content-type: a literal with incremental indexing, name from the static table');
  assert.deepEqual(decoder.decode(first), OK_HEADERS);
  assert.deepEqual(decoder.decode(encoder.encode(OK_TRAILERS)), OK_TRAILERS);
  // grpc-status went in last: index 62, content-type 63.
  assert.deepEqual([...encoder.encode(OK_HEADERS)], [0x88, 0xbf]);
  assert.deepEqual([...encoder.encode(OK_TRAILERS)], [0xbe]);
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(decoder.decode(encoder.encode(OK_HEADERS)), OK_HEADERS);
    assert.deepEqual(decoder.decode(encoder.encode(OK_TRAILERS)), OK_TRAILERS);
  }
  // Literal blocks made elsewhere neither change nor need the table.
  assert.equal(encoder.withPendingUpdate(encodeFields(OK_TRAILERS)).length, encodeFields(OK_TRAILERS).length);
});

test("the answer encoder follows a smaller table: a size update first, evictions, literals for what does not fit", () => {
  const encoder = new HpackAnswerEncoder();
  const decoder = new HpackDecoder();
  decoder.decode(encoder.encode(OK_HEADERS));
  decoder.decode(encoder.encode(OK_TRAILERS));
  // 50 octets hold grpc-status: 0 (11 + 1 + 32) but not content-type (12 + 22 + 32), the older entry.
  encoder.decoderTableSize(50);
  const shrunk = encoder.encode(OK_HEADERS);
  assert.deepEqual([...shrunk.subarray(0, 3)], [0x20 | 31, 50 - 31, 0x88], 'a size update of 50, then :status');
  assert.deepEqual([...shrunk.subarray(3, 5)], [0x0f, 31 - 15], 'content-type (name 31) as a literal without indexing: it no longer fits');
  assert.deepEqual(decoder.decode(shrunk), OK_HEADERS);
  assert.deepEqual([...encoder.encode(OK_TRAILERS)], [0xbe], 'grpc-status is still in the table');
  assert.deepEqual(decoder.decode(encoder.encode(OK_TRAILERS)), OK_TRAILERS);
  // A larger size later is not taken up: no update, nothing inserted.
  encoder.decoderTableSize(4096);
  assert.deepEqual(decoder.decode(encoder.encode(OK_HEADERS)), OK_HEADERS);
  assert.equal(encoder.encode(OK_HEADERS)[1], 0x0f, 'still a literal without indexing');
  // Down to 0: the update leads the next block, whichever kind it is.
  encoder.decoderTableSize(0);
  const literal = encoder.withPendingUpdate(encodeFields(OK_TRAILERS));
  assert.equal(literal[0], 0x20);
  assert.deepEqual(decoder.decode(literal), OK_TRAILERS);
  assert.deepEqual(decoder.decode(encoder.encode(OK_TRAILERS)), OK_TRAILERS);
  assert.notEqual(encoder.encode(OK_TRAILERS)[0], 0xbe, 'no index into an empty table');
});
