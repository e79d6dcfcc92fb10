import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { GetRequest, KVClient, KVService, PutRequest, type GetResponse, type PutResponse, type ScanResponse } from '@concord/proto/kv';
import { ServiceError } from '../errors.js';
import { createLogger } from '../logging.js';
import { Metrics } from '../metrics.js';
import { CLIENT_CHANNEL_OPTIONS, ConcordServer, serverStream, unary } from '../server.js';
import { createCertificateAuthority, issueCertificate } from '../testing/certificates.js';
import { channelCredentials, type TlsMaterial } from '../tls.js';
import { HpackDecoder, encodeFields } from './hpack.js';
import { MAX_HELD_REQUEST_BYTES } from './lean-session.js';

const silent = createLogger({ service: 'test', level: 'silent' });
const BIG = 7 * 1024 * 1024;

/** What the Put handler saw of its last call's metadata. */
let lastMarker: string | undefined;

async function startKV(metrics = new Metrics(), tls?: TlsMaterial) {
  const server = await ConcordServer.start({
    host: '127.0.0.1',
    port: 0,
    logger: silent,
    metrics,
    ...(tls === undefined ? {} : { tls }),
    services: [
      {
        name: 'concord.v1.KV',
        definition: KVService,
        implementation: {
          get: unary(async (request: GetRequest): Promise<GetResponse> => {
            if (request.key === 'big') return { found: true, value: Buffer.alloc(BIG, 3), version: 1 };
            throw new ServiceError(grpc.status.NOT_FOUND, `no key ${request.key}`);
          }),
          put: unary(async (request: PutRequest, call): Promise<PutResponse> => {
            lastMarker = call.metadata.get('x-marker')[0] as string | undefined;
            if (request.key === 'slow') await new Promise((resolve) => setTimeout(resolve, 300));
            return { version: request.value.length };
          }),
          // Not made with unary(): grpc-js answers it.
          delete: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) =>
            callback({ code: grpc.status.FAILED_PRECONDITION, details: 'answered by grpc-js' }),
          scan: serverStream(async function* (request: { limit: number }) {
            for (let i = 0; i < request.limit; i++) yield { kvs: [{ key: `k${i}`, value: Buffer.alloc(1024, i % 256), version: i }] };
          }),
        },
      },
    ],
  });
  return server;
}

function put(client: KVClient, value: Buffer, key = 'k', metadata = new grpc.Metadata()): Promise<{ error: grpc.ServiceError | null; response: PutResponse | undefined }> {
  return new Promise((resolve) => client.put(PutRequest.fromPartial({ key, value }), metadata, (error, response) => resolve({ error, response })));
}

function get(client: KVClient, key: string): Promise<{ error: grpc.ServiceError | null; response: GetResponse | undefined }> {
  return new Promise((resolve) => client.get(GetRequest.fromPartial({ key }), (error, response) => resolve({ error, response })));
}

function scan(client: KVClient, limit: number): Promise<ScanResponse[]> {
  return new Promise((resolve, reject) => {
    const messages: ScanResponse[] = [];
    const stream = client.scan({ prefix: '', startKey: '', endKey: '', limit, consistency: 0 });
    stream.on('data', (message: ScanResponse) => messages.push(message));
    stream.on('end', () => resolve(messages));
    stream.on('error', reject);
  });
}

/** The header fields of a gRPC Put request, as a client writes them. */
const PUT_FIELDS = [':method', 'POST', ':scheme', 'http', ':path', '/concord.v1.KV/Put', ':authority', 'x', 'content-type', 'application/grpc', 'te', 'trailers'];

/** A Put request as the payload of a DATA frame: the gRPC length prefix and the message. */
function putMessage(key: string, value: string): Buffer {
  const request = Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key, value: Buffer.from(value) })).finish());
  return Buffer.concat([Buffer.from([0, 0, 0, 0, request.length]), request]);
}

async function servedBy(metrics: Metrics): Promise<{ lean: number; node: number }> {
  const text = await metrics.exposition();
  const count = (label: string): number => Number(new RegExp(`concord_grpc_server_connections_total\\{served_by="${label}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return { lean: count('lean'), node: count('node_http2') };
}

test('a connection whose first call is a direct method stays lean, and relays the other methods', async () => {
  const metrics = new Metrics();
  const server = await startKV(metrics);
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    assert.equal((await put(client, Buffer.from('four'))).response?.version, 4);
    assert.deepEqual(await servedBy(metrics), { lean: 1, node: 0 });
    // A unary method of grpc-js, and a server stream larger than the client's windows, relayed.
    const deleted = await new Promise<grpc.ServiceError | null>((resolve) => client.delete({ key: 'k', expectedVersion: 0 }, (error) => resolve(error)));
    assert.equal(deleted?.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(deleted?.details, 'answered by grpc-js');
    const scanned = await scan(client, 3000);
    assert.equal(scanned.length, 3000);
    assert.deepEqual(
      scanned.map((message) => message.kvs[0]?.key),
      Array.from({ length: 3000 }, (_, i) => `k${i}`),
    );
    assert.ok(scanned.every((message, i) => message.kvs[0]?.value.equals(Buffer.alloc(1024, i % 256))));
    // Direct calls go on on the same connection.
    assert.equal((await put(client, Buffer.from('seven!!'))).response?.version, 7);
    assert.deepEqual(await servedBy(metrics), { lean: 1, node: 0 });
  } finally {
    client.close();
    await server.shutdown();
  }
});

/** One Put on a node:http2 session, as gRPC frames it; the answer's headers and trailers. */
function rawPut(session: http2.ClientHttp2Session, value: string): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const request = session.request({ ':method': 'POST', ':path': '/concord.v1.KV/Put', 'content-type': 'application/grpc', te: 'trailers' });
    let headers: http2.IncomingHttpHeaders = {};
    request.on('response', (received) => (headers = received));
    request.on('trailers', (trailers) => resolve({ headers, trailers }));
    request.on('error', reject);
    request.on('data', () => {});
    request.end(putMessage('k', value));
  });
}

test("answers follow the client's HPACK table size, also when it shrinks it mid-connection (nghttp2 as the client)", async () => {
  const metrics = new Metrics();
  const server = await startKV(metrics);
  // nghttp2 fails the connection (COMPRESSION_ERROR) if a smaller table is not signalled by the
  // next header block, or if a block refers to an entry the smaller table no longer holds.
  const sessions = [
    http2.connect(`http://${server.address}`),
    http2.connect(`http://${server.address}`, { settings: { headerTableSize: 0 } }),
    http2.connect(`http://${server.address}`, { settings: { headerTableSize: 50 } }),
  ];
  try {
    for (const [i, session] of sessions.entries()) {
      for (let call = 0; call < 6; call++) {
        if (call === 3) {
          // The table in use shrinks, and with it what the answers may refer to.
          await new Promise<void>((resolve, reject) => session.settings({ headerTableSize: i === 0 ? 100 : 0 }, (error) => (error ? reject(error) : resolve())));
        }
        const { headers, trailers } = await rawPut(session, 'x'.repeat(call + 1));
        assert.equal(headers[':status'], 200, `session ${i}, call ${call}`);
        assert.equal(headers['content-type'], 'application/grpc+proto', `session ${i}, call ${call}`);
        assert.equal(trailers['grpc-status'], '0', `session ${i}, call ${call}`);
      }
    }
    assert.deepEqual(await servedBy(metrics), { lean: 3, node: 0 });
  } finally {
    for (const session of sessions) session.close();
    await server.shutdown();
  }
});

test('a connection whose first call is another method goes to node:http2, direct calls included', async () => {
  const metrics = new Metrics();
  const server = await startKV(metrics);
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    assert.equal((await scan(client, 2)).length, 2);
    assert.equal((await put(client, Buffer.from('abc'))).response?.version, 3);
    const missing = await get(client, 'nope');
    assert.equal(missing.error?.code, grpc.status.NOT_FOUND);
    assert.equal(missing.error?.details, 'no key nope');
    assert.deepEqual(await servedBy(metrics), { lean: 0, node: 1 });
  } finally {
    client.close();
    await server.shutdown();
  }
});

test('messages of several MiB both ways, and many calls at once, on a lean connection', async () => {
  const metrics = new Metrics();
  const server = await startKV(metrics);
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    assert.equal((await put(client, Buffer.alloc(10))).response?.version, 10);
    const [large, big] = await Promise.all([put(client, Buffer.alloc(BIG, 1)), get(client, 'big')]);
    assert.equal(large.error, null);
    assert.equal(large.response?.version, BIG);
    assert.equal(big.error, null);
    assert.ok(big.response?.value.equals(Buffer.alloc(BIG, 3)));
    const many = await Promise.all(Array.from({ length: 500 }, (_, i) => put(client, Buffer.alloc(i))));
    assert.deepEqual(
      many.map(({ response }) => response?.version),
      Array.from({ length: 500 }, (_, i) => i),
    );
    assert.deepEqual(await servedBy(metrics), { lean: 1, node: 0 });
  } finally {
    client.close();
    await server.shutdown();
  }
});

/** A client that writes frames by hand and reads what comes back. */
class RawClient {
  private buffer = Buffer.alloc(0);
  readonly frames: { type: number; flags: number; stream: number; payload: Buffer }[] = [];
  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 9) {
        const length = this.buffer.readUIntBE(0, 3);
        if (this.buffer.length < 9 + length) break;
        this.frames.push({ type: this.buffer[3]!, flags: this.buffer[4]!, stream: this.buffer.readUInt32BE(5) & 0x7fffffff, payload: this.buffer.subarray(9, 9 + length) });
        this.buffer = this.buffer.subarray(9 + length);
      }
    });
    socket.on('error', () => undefined);
  }

  static async connect(address: string): Promise<RawClient> {
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    const socket = net.connect(port, host);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    return new RawClient(socket);
  }

  /** Waits for the server's SETTINGS, sends the client's (`settings`, empty by default) and acknowledges the server's. */
  async handshake(settings: Buffer = Buffer.alloc(0)): Promise<void> {
    await this.waitFor('the server SETTINGS', (f) => f.type === 4 && f.flags === 0);
    this.send(4, 0, 0, settings);
    this.send(4, 1, 0);
  }

  send(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.alloc(9);
    header.writeUIntBE(payload.length, 0, 3);
    header[3] = type;
    header[4] = flags;
    header.writeUInt32BE(stream, 5);
    this.socket.write(Buffer.concat([header, payload]));
  }

  async waitFor(what: string, predicate: (frame: { type: number; flags: number; stream: number; payload: Buffer }) => boolean) {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = this.frames.find(predicate);
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`no ${what} within 5 s; got frame types ${this.frames.map((f) => f.type).join(',')}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  get closed(): Promise<void> {
    return this.socket.closed ? Promise.resolve() : new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

test('the HTTP/2 of a lean connection: PINGs, a call written by hand, and GOAWAY for a protocol error', async () => {
  const server = await startKV();
  const raw = await RawClient.connect(server.address);
  try {
    await raw.handshake();
    raw.send(6, 0, 0, Buffer.from('pingpong'));
    const pong = await raw.waitFor('a PING acknowledgement', (f) => f.type === 6 && f.flags === 1);
    assert.equal(pong.payload.toString(), 'pingpong');
    raw.send(1, 0x4, 1, encodeFields(PUT_FIELDS));
    raw.send(0, 0x1, 1, putMessage('k', '12345'));
    const decoder = new HpackDecoder();
    const headers = await raw.waitFor('response headers', (f) => f.type === 1 && f.stream === 1);
    // Only what gRPC needs: every header value costs a Node client an external string per call.
    assert.deepEqual(decoder.decode(headers.payload), [':status', '200', 'content-type', 'application/grpc+proto']);
    const data = await raw.waitFor('the response message', (f) => f.type === 0 && f.stream === 1);
    assert.equal(data.payload.readUInt32BE(1), data.payload.length - 5);
    const trailers = await raw.waitFor('trailers', (f) => f.type === 1 && f.stream === 1 && (f.flags & 0x1) !== 0);
    assert.deepEqual(decoder.decode(trailers.payload), ['grpc-status', '0']);
    // DATA on stream 0 is a connection error: GOAWAY with PROTOCOL_ERROR, then the end.
    raw.send(0, 0, 0, Buffer.from('x'));
    const goAway = await raw.waitFor('GOAWAY', (f) => f.type === 7);
    assert.equal(goAway.payload.readUInt32BE(4), 1, 'PROTOCOL_ERROR');
    assert.equal(goAway.payload.readUInt32BE(0) & 0x7fffffff, 1, 'the last stream processed');
    await raw.closed;
  } finally {
    raw.destroy();
    await server.shutdown();
  }
});

test('a connection that is not HTTP/2 is refused by node:http2, and the server goes on', async () => {
  const server = await startKV();
  const socket = net.connect(server.port, '127.0.0.1');
  socket.on('error', () => undefined);
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((resolve) => socket.once('close', resolve));
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    assert.equal((await put(client, Buffer.from('ok'))).response?.version, 2);
  } finally {
    client.close();
    await server.shutdown();
  }
});

test('metadata larger than a frame arrives in CONTINUATION frames, whole', async () => {
  const metrics = new Metrics();
  const server = await startKV(metrics);
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    assert.equal((await put(client, Buffer.from('x'))).error, null);
    // Random letters do not compress: the header block is far above the 16 KiB frame size.
    const marker = Array.from({ length: 40_000 }, () => String.fromCharCode(97 + Math.floor(Math.random() * 26))).join('');
    const metadata = new grpc.Metadata();
    metadata.set('x-marker', marker);
    const done = await put(client, Buffer.from('abc'), 'k', metadata);
    assert.equal(done.error, null, done.error?.message);
    assert.equal(lastMarker, marker);
    assert.deepEqual(await servedBy(metrics), { lean: 1, node: 0 });
  } finally {
    client.close();
    await server.shutdown();
  }
});

test('with mutual TLS, a lean connection serves direct calls and relays the others', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'concord-lean-tls-'));
  try {
    const ca = createCertificateAuthority(dir, 'ca');
    const files = issueCertificate(ca, dir, 'server', { dns: ['localhost'], ips: ['127.0.0.1'] });
    const tls: TlsMaterial = { cert: readFileSync(files.cert), key: readFileSync(files.key), ca: readFileSync(ca.cert) };
    const metrics = new Metrics();
    const server = await startKV(metrics, tls);
    const client = new KVClient(server.address, channelCredentials(tls), CLIENT_CHANNEL_OPTIONS);
    try {
      assert.equal((await put(client, Buffer.from('four'))).response?.version, 4);
      assert.equal((await scan(client, 5)).length, 5);
      assert.deepEqual(await servedBy(metrics), { lean: 1, node: 0 });
      const plaintext = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
      try {
        assert.equal((await put(plaintext, Buffer.from('x'))).error?.code, grpc.status.UNAVAILABLE);
      } finally {
        plaintext.close();
      }
    } finally {
      client.close();
      await server.shutdown();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('shutdown lets a lean call in flight finish, and refuses new connections', async () => {
  const server = await startKV();
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    assert.equal((await put(client, Buffer.from('a'))).error, null);
    const slow = put(client, Buffer.from('slow!'), 'slow');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const stopped = server.shutdown();
    const answer = await slow;
    assert.equal(answer.error, null, answer.error?.message);
    assert.equal(answer.response?.version, 5);
    await stopped;
    const refused = await new Promise<Error | undefined>((resolve) => {
      const socket = net.connect(server.port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(undefined);
      });
      socket.once('error', resolve);
    });
    assert.ok(refused !== undefined, 'no connection after shutdown');
  } finally {
    client.close();
  }
});

test('a client that waits for its SETTINGS to be acknowledged before its first request is served (by node:http2)', async () => {
  const metrics = new Metrics();
  const server = await startKV(metrics);
  const raw = await RawClient.connect(server.address);
  try {
    await raw.handshake(Buffer.from([0, 4, 0, 1, 0, 0])); // SETTINGS_INITIAL_WINDOW_SIZE 65536
    // Nothing more until the acknowledgement: the sniffer gives up waiting for a request and the
    // connection goes to node:http2, which acknowledges the client's SETTINGS exactly once.
    await raw.waitFor('the acknowledgement of the client SETTINGS', (f) => f.type === 4 && f.flags === 1);
    raw.send(1, 0x4, 1, encodeFields(PUT_FIELDS));
    raw.send(0, 0x1, 1, putMessage('k', '123'));
    await raw.waitFor('the answer', (f) => f.type === 1 && f.stream === 1 && (f.flags & 0x1) !== 0);
    assert.equal(raw.frames.filter((f) => f.type === 4 && f.flags === 1).length, 1, 'one acknowledgement');
    assert.equal(raw.frames.filter((f) => f.type === 7).length, 0, 'no GOAWAY');
    assert.deepEqual(await servedBy(metrics), { lean: 0, node: 1 });
  } finally {
    raw.destroy();
    await server.shutdown();
  }
});

test('a malformed request on a lean connection is reset (PROTOCOL_ERROR); the connection goes on', async () => {
  const server = await startKV();
  const raw = await RawClient.connect(server.address);
  try {
    await raw.handshake();
    const message = putMessage('k', '12345');
    const fields = PUT_FIELDS;
    raw.send(1, 0x4, 1, encodeFields(fields));
    raw.send(0, 0x1, 1, message);
    await raw.waitFor('the first answer', (f) => f.type === 1 && f.stream === 1 && (f.flags & 0x1) !== 0);
    // An uppercase header name (§8.1.2), then a body longer than its content-length (§8.1.2.6).
    raw.send(1, 0x4, 3, encodeFields([...fields, 'X-Marker', 'a']));
    raw.send(0, 0x1, 3, message);
    raw.send(1, 0x4, 5, encodeFields([...fields, 'content-length', '3']));
    raw.send(0, 0x1, 5, message);
    for (const stream of [3, 5]) {
      const reset = await raw.waitFor(`RST_STREAM on stream ${stream}`, (f) => f.type === 3 && f.stream === stream);
      assert.equal(reset.payload.readUInt32BE(0), 1, 'PROTOCOL_ERROR');
    }
    // DATA on a stream closed by END_STREAM both ways is a stream error too (STREAM_CLOSED), not ignored.
    raw.send(0, 0, 1, message);
    const closed = await raw.waitFor('RST_STREAM on stream 1', (f) => f.type === 3 && f.stream === 1);
    assert.equal(closed.payload.readUInt32BE(0), 5, 'STREAM_CLOSED');
    raw.send(1, 0x4, 7, encodeFields(fields));
    raw.send(0, 0x1, 7, message);
    const headers = await raw.waitFor('the answer on stream 7', (f) => f.type === 1 && f.stream === 7);
    await raw.waitFor('the trailers on stream 7', (f) => f.type === 1 && f.stream === 7 && (f.flags & 0x1) !== 0);
    // The server's header blocks refer to its dynamic table: decode all of them, in order.
    const decoder = new HpackDecoder();
    const blocks = raw.frames.filter((f) => f.type === 1);
    const decoded = blocks.map((f) => decoder.decode(f.payload));
    assert.deepEqual(decoded[blocks.indexOf(headers)], [':status', '200', 'content-type', 'application/grpc+proto']);
    assert.deepEqual(decoded.at(-1), ['grpc-status', '0']);
    assert.ok(headers.payload.length <= 2, `the second answer's headers are indexes only (${headers.payload.length} bytes)`);
    assert.equal(raw.frames.filter((f) => f.type === 7).length, 0, 'no GOAWAY');
  } finally {
    raw.destroy();
    await server.shutdown();
  }
});

test('a client that opens streams and resets them at once (rapid reset) is cut off with ENHANCE_YOUR_CALM', async () => {
  const server = await startKV();
  const raw = await RawClient.connect(server.address);
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    await raw.handshake();
    const fields = PUT_FIELDS;
    const cancel = Buffer.from([0, 0, 0, 8]);
    // More than the burst of 1000 in one go: each stream starts a call, and is reset before its answer.
    for (let stream = 1; stream <= 2 * 1100; stream += 2) {
      raw.send(1, 0x4, stream, encodeFields(fields));
      raw.send(3, 0, stream, cancel);
    }
    const goAway = await raw.waitFor('GOAWAY', (f) => f.type === 7);
    assert.equal(goAway.payload.readUInt32BE(4), 11, 'ENHANCE_YOUR_CALM');
    await raw.closed;
    // Other connections are served as before.
    assert.equal((await put(client, Buffer.from('ok'))).response?.version, 2);
  } finally {
    raw.destroy();
    client.close();
    await server.shutdown();
  }
});

test('requests left incomplete on one connection are held up to MAX_HELD_REQUEST_BYTES; past it a request is refused and the others go on', async () => {
  const server = await startKV();
  const raw = await RawClient.connect(server.address);
  try {
    await raw.handshake();
    // Nine requests of 7.5 MB each, all but their last frame sent: together above the limit.
    const value = Buffer.alloc(7_500_000, 1);
    const request = Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key: 'k', value })).finish());
    const message = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), request]);
    message.writeUInt32BE(request.length, 1);
    const pieces: Buffer[] = [];
    for (let at = 0; at < message.length; at += 16_384) pieces.push(message.subarray(at, at + 16_384));
    const streams = [1, 3, 5, 7, 9, 11, 13, 15, 17];
    assert.ok(streams.length * message.length > MAX_HELD_REQUEST_BYTES && (streams.length - 1) * message.length < MAX_HELD_REQUEST_BYTES);
    for (const stream of streams) {
      raw.send(1, 0x4, stream, encodeFields(PUT_FIELDS));
      for (const piece of pieces.slice(0, -1)) raw.send(0, 0, stream, piece);
    }
    const refused = await raw.waitFor('the answer on stream 17', (f) => f.type === 1 && f.stream === 17 && (f.flags & 0x1) !== 0);
    // Every request whose data is complete gets its answer; the refused one's rest is ignored.
    for (const stream of streams) raw.send(0, 0x1, stream, pieces.at(-1));
    for (const stream of streams.slice(0, -1)) {
      await raw.waitFor(`the trailers on stream ${stream}`, (f) => f.type === 1 && f.stream === stream && (f.flags & 0x1) !== 0);
    }
    // The held bytes were given back: a new request on the same connection is served.
    raw.send(1, 0x4, 19, encodeFields(PUT_FIELDS));
    raw.send(0, 0x1, 19, putMessage('k', '12345'));
    await raw.waitFor('the trailers on stream 19', (f) => f.type === 1 && f.stream === 19 && (f.flags & 0x1) !== 0);
    const decoder = new HpackDecoder();
    const blocks = new Map<number, string[][]>();
    for (const f of raw.frames.filter((frame) => frame.type === 1)) {
      blocks.set(f.stream, [...(blocks.get(f.stream) ?? []), decoder.decode(f.payload)]);
    }
    const status = (stream: number) => {
      const fields = blocks.get(stream)!.flat();
      const at = fields.lastIndexOf('grpc-status');
      return { code: Number(fields[at + 1]), message: decodeURIComponent(fields[fields.indexOf('grpc-message') + 1] ?? '') };
    };
    assert.equal(refused.stream, 17);
    assert.equal(status(17).code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(status(17).message, new RegExp(`limit of ${MAX_HELD_REQUEST_BYTES} bytes`));
    for (const stream of [...streams.slice(0, -1), 19]) assert.equal(status(stream).code, grpc.status.OK, `stream ${stream}`);
    assert.equal(raw.frames.filter((f) => f.type === 7).length, 0, 'no GOAWAY');
    // The refused request's stream is closed with NO_ERROR: the rest of it is not wanted (RFC 9113 §8.1).
    assert.deepEqual(
      raw.frames.filter((f) => f.type === 3).map((f) => [f.stream, f.payload.readUInt32BE(0)]),
      [[17, 0]],
    );
  } finally {
    raw.destroy();
    await server.shutdown();
  }
});
