import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { KVClient, KVService, PutRequest, type PutResponse } from '@concord/proto/kv';
import { directRoutes, isPlainGrpc } from './direct-unary.js';
import { ServiceError } from './errors.js';
import { createLogger } from './logging.js';
import { Metrics } from './metrics.js';
import { CLIENT_CHANNEL_OPTIONS, ConcordServer, MAX_MESSAGE_BYTES, callSignal, serverStream, unary } from './server.js';

const silent = createLogger({ service: 'test', level: 'silent' });

type PutHandler = (request: PutRequest, call: grpc.ServerUnaryCall<PutRequest, PutResponse>) => Promise<PutResponse>;

async function startKV(put: PutHandler, metrics = new Metrics()) {
  const server = await ConcordServer.start({
    host: '127.0.0.1',
    port: 0,
    logger: silent,
    metrics,
    services: [
      {
        name: 'concord.v1.KV',
        definition: KVService,
        implementation: {
          get: unary(async () => {
            throw new ServiceError(grpc.status.UNIMPLEMENTED, 'not in this test');
          }),
          put: unary(put),
          // Not made with unary(): grpc-js answers it.
          delete: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) =>
            callback({ code: grpc.status.FAILED_PRECONDITION, details: 'answered by grpc-js' }),
          scan: serverStream(async function* () {
            yield { kvs: [{ key: 'k', value: Buffer.from('v'), version: 1 }] };
          }),
        },
      },
    ],
  });
  return server;
}

/** A gRPC message frame: compressed flag, length, payload. */
function frame(payload: Buffer, options: { declaredLength?: number; compressed?: boolean } = {}): Buffer {
  const header = Buffer.alloc(5);
  header[0] = options.compressed === true ? 1 : 0;
  header.writeUInt32BE(options.declaredLength ?? payload.length, 1);
  return Buffer.concat([header, payload]);
}

/** One call written by hand on a raw HTTP/2 stream; returns the status and message it got. */
async function rawCall(address: string, path: string, body: Buffer, headers: Record<string, string> = {}): Promise<{ code: number; message: string }> {
  const session = http2.connect(`http://${address}`);
  try {
    const request = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let status: http2.IncomingHttpHeaders | undefined;
    request.on('response', (responseHeaders) => {
      if (responseHeaders['grpc-status'] !== undefined) status = responseHeaders;
    });
    request.on('trailers', (trailers) => {
      status = trailers;
    });
    request.on('data', () => undefined);
    request.on('error', () => undefined);
    request.end(body);
    await once(request, 'close');
    assert.ok(status !== undefined, `no grpc-status for ${path}`);
    return { code: Number(status['grpc-status']), message: decodeURIComponent(String(status['grpc-message'] ?? '')) };
  } finally {
    session.close();
  }
}

function put(client: KVClient, request: Partial<PutRequest>, options: { metadata?: grpc.Metadata; deadline?: Date } = {}) {
  return new Promise<{ error: grpc.ServiceError | null; response: PutResponse | undefined }>((resolve) => {
    client.put(PutRequest.fromPartial(request), options.metadata ?? new grpc.Metadata(), { deadline: options.deadline ?? Infinity }, (error, response) =>
      resolve({ error, response }),
    );
  });
}

test('the unary methods made with unary() are answered directly; streams and other handlers stay with grpc-js', () => {
  const routes = directRoutes([
    {
      definition: KVService as unknown as grpc.ServiceDefinition,
      implementation: {
        get: unary(async () => ({})),
        put: unary(async () => ({})),
        delete: () => undefined,
        scan: serverStream(async function* () {}),
      },
    },
  ]);
  assert.deepEqual([...routes.keys()].sort(), ['/concord.v1.KV/Get', '/concord.v1.KV/Put']);
  const route = routes.get('/concord.v1.KV/Put')!;
  assert.equal(route.service, 'concord.v1.KV');
  assert.equal(route.method, 'Put');
  assert.equal(route.spanName, 'grpc.concord.v1.KV/Put');
  assert.equal(isPlainGrpc({ 'content-type': 'application/grpc' }), true);
  assert.equal(isPlainGrpc({ 'content-type': 'application/grpc+proto', 'grpc-encoding': 'identity' }), true);
  assert.equal(isPlainGrpc({ 'content-type': 'application/grpc', 'grpc-encoding': 'gzip' }), false);
  assert.equal(isPlainGrpc({ 'content-type': 'text/plain' }), false);
});

test('a direct call and a grpc-js call share one connection, with the same statuses', async () => {
  const server = await startKV(async (request) => ({ version: request.value.length }));
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    const done = await put(client, { key: 'k', value: Buffer.from('four') });
    assert.equal(done.error, null);
    assert.equal(done.response?.version, 4);
    const viaGrpcJs = await new Promise<grpc.ServiceError | null>((resolve) => client.delete({ key: 'k', expectedVersion: 0 }, (error) => resolve(error)));
    assert.equal(viaGrpcJs?.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(viaGrpcJs?.details, 'answered by grpc-js');
    const scanned: unknown[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = client.scan({ prefix: '', startKey: '', endKey: '', limit: 0, consistency: 0 });
      stream.on('data', (message) => scanned.push(message));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    assert.equal(scanned.length, 1);
  } finally {
    client.close();
    await server.shutdown();
  }
});

test('a request compressed by the client is answered (by grpc-js, which decompresses it)', async () => {
  const server = await startKV(async (request) => ({ version: request.value.length }));
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), { ...CLIENT_CHANNEL_OPTIONS, 'grpc.default_compression_algorithm': 2 });
  try {
    const done = await put(client, { key: 'k', value: Buffer.alloc(10_000, 7) });
    assert.equal(done.error, null);
    assert.equal(done.response?.version, 10_000);
  } finally {
    client.close();
    await server.shutdown();
  }
});

test('the handler sees the metadata, deadline, path and peer of its call', async () => {
  let seen: { marker: unknown; deadline: grpc.Deadline; path: string; peer: string; hasTimeoutHeader: boolean } | undefined;
  const server = await startKV(async (_request, call) => {
    seen = {
      marker: call.metadata.get('x-marker')[0],
      deadline: call.getDeadline(),
      path: call.getPath(),
      peer: call.getPeer(),
      hasTimeoutHeader: call.metadata.get('grpc-timeout').length > 0,
    };
    return { version: 1 };
  });
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    const metadata = new grpc.Metadata();
    metadata.set('x-marker', 'here');
    const before = Date.now();
    const done = await put(client, { key: 'k' }, { metadata, deadline: new Date(before + 30_000) });
    assert.equal(done.error, null);
    assert.ok(seen !== undefined);
    assert.equal(seen.marker, 'here');
    assert.equal(seen.path, '/concord.v1.KV/Put');
    assert.match(seen.peer, /^127\.0\.0\.1:\d+$/);
    assert.equal(seen.hasTimeoutHeader, false, 'transport headers are not metadata');
    const deadline = seen.deadline instanceof Date ? seen.deadline.getTime() : seen.deadline;
    assert.ok(deadline > before + 25_000 && deadline <= before + 31_000, `deadline ${deadline - before} ms after the call`);
  } finally {
    client.close();
    await server.shutdown();
  }
});

test('a client that cancels: the handler signal fires and the call is counted CANCELLED', async () => {
  const metrics = new Metrics();
  let aborted: (() => void) | undefined;
  const abortedOnce = new Promise<void>((resolve) => (aborted = resolve));
  const server = await startKV(async (_request, call) => {
    const signal = callSignal(call);
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    aborted?.();
    return { version: 1 };
  }, metrics);
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    const call = client.put(PutRequest.fromPartial({ key: 'k' }), () => undefined);
    await new Promise((resolve) => setTimeout(resolve, 100));
    call.cancel();
    await Promise.race([abortedOnce, new Promise((_, reject) => setTimeout(() => reject(new Error('the handler was not told of the cancellation')), 5000))]);
    const exposition = await metrics.exposition();
    assert.match(exposition, /concord_grpc_server_handled_total\{service="concord.v1.KV",method="Put",code="CANCELLED"\} 1/);
  } finally {
    client.close();
    await server.shutdown();
  }
});

test('bad frames get a clear status and never reach the handler', async () => {
  let calls = 0;
  const server = await startKV(async (request) => {
    calls++;
    if (request.key === 'slow') await new Promise((resolve) => setTimeout(resolve, 50));
    return { version: 1 };
  });
  const path = '/concord.v1.KV/Put';
  const good = Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key: 'k' })).finish());
  try {
    const tooLarge = await rawCall(server.address, path, frame(Buffer.alloc(10), { declaredLength: MAX_MESSAGE_BYTES + 1 }));
    assert.equal(tooLarge.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(tooLarge.message, `Received message larger than max (${MAX_MESSAGE_BYTES + 1} vs ${MAX_MESSAGE_BYTES})`);

    const two = await rawCall(server.address, path, Buffer.concat([frame(good), frame(good)]));
    assert.equal(two.code, grpc.status.UNIMPLEMENTED);
    assert.match(two.message, /second request message for unary method \/concord\.v1\.KV\/Put/);

    const none = await rawCall(server.address, path, Buffer.alloc(0));
    assert.equal(none.code, grpc.status.UNIMPLEMENTED);
    assert.match(none.message, /no request message/);

    const cut = await rawCall(server.address, path, frame(good).subarray(0, 7));
    assert.equal(cut.code, grpc.status.INTERNAL);
    assert.match(cut.message, /incomplete message/);

    const garbage = await rawCall(server.address, path, frame(Buffer.from([0x0a, 0x05, 0x61])));
    assert.equal(garbage.code, grpc.status.INTERNAL);
    assert.match(garbage.message, /^Error deserializing request: /);

    const flagged = await rawCall(server.address, path, frame(good, { compressed: true }));
    assert.equal(flagged.code, grpc.status.INTERNAL);
    assert.match(flagged.message, /compressed message .* without a grpc-encoding/);

    const timeout = await rawCall(server.address, path, frame(good), { 'grpc-timeout': 'soon' });
    assert.equal(timeout.code, grpc.status.INTERNAL);
    assert.equal(timeout.message, 'Invalid grpc-timeout value "soon"');

    assert.equal(calls, 0, 'no bad frame reached the handler');
    const fine = await rawCall(server.address, path, frame(good), { 'grpc-timeout': '5S' });
    assert.equal(fine.code, grpc.status.OK);
    assert.equal(calls, 1);
    // Beyond what a Node timer holds (2^31 - 1 ms): a deadline 11,000 years away, not an expired one.
    const slow = Buffer.from(PutRequest.encode(PutRequest.fromPartial({ key: 'slow' })).finish());
    const distant = await rawCall(server.address, path, frame(slow), { 'grpc-timeout': '99999999H' });
    assert.equal(distant.code, grpc.status.OK, distant.message);
    assert.equal(calls, 2);
  } finally {
    await server.shutdown();
  }
});

test('an error message with a lone surrogate reaches the client, the surrogate replaced, and the server goes on', async () => {
  let calls = 0;
  const server = await startKV(async () => {
    calls++;
    if (calls === 1) throw new ServiceError(grpc.status.FAILED_PRECONDITION, 'key "\uD800" is odd');
    return { version: 7 };
  });
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  try {
    const failed = await put(client, { key: 'k' });
    assert.equal(failed.error?.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(failed.error?.details, 'key "\uFFFD" is odd');
    const next = await put(client, { key: 'k' });
    assert.equal(next.error, null);
    assert.equal(next.response?.version, 7);
  } finally {
    client.close();
    await server.shutdown();
  }
});
