import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';
import {
  KVClient,
  KVService,
  type DeleteRequest,
  type DeleteResponse,
  type GetRequest,
  type GetResponse,
  type PutRequest,
  type PutResponse,
  type ScanRequest,
  type ScanResponse,
} from '@concord/proto/kv';
import { descriptorSetPath } from '@concord/proto';
import { ServiceError } from './errors.js';
import { splitFileDescriptorSet } from './reflection-descriptors.js';
import { createLogger } from './logging.js';
import { CLIENT_CHANNEL_OPTIONS, ConcordServer, callSignal, serverStream, unary } from './server.js';

/** A logger whose lines the test can read back. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  const logger = createLogger({ service: 'test', level: 'debug', destination });
  const lines = (): Record<string, unknown>[] =>
    chunks.join('').split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines };
}

interface FakeKV {
  get?: (request: GetRequest, call: grpc.ServerUnaryCall<GetRequest, GetResponse>) => Promise<GetResponse>;
  put?: (request: PutRequest, call: grpc.ServerUnaryCall<PutRequest, PutResponse>) => Promise<PutResponse>;
  delete?: (request: DeleteRequest, call: grpc.ServerUnaryCall<DeleteRequest, DeleteResponse>) => Promise<DeleteResponse>;
  scan?: (request: ScanRequest, call: grpc.ServerWritableStream<ScanRequest, ScanResponse>) => AsyncIterable<ScanResponse>;
}

const notImplemented = (): never => {
  throw new ServiceError(grpc.status.UNIMPLEMENTED, 'not in this test');
};

async function startKV(fake: FakeKV, shutdownGraceMs = 2000) {
  const { logger, lines } = capturingLogger();
  const server = await ConcordServer.start({
    host: '127.0.0.1',
    port: 0,
    logger,
    shutdownGraceMs,
    services: [
      {
        name: 'concord.v1.KV',
        definition: KVService,
        implementation: {
          get: unary(fake.get ?? notImplemented),
          put: unary(fake.put ?? notImplemented),
          delete: unary(fake.delete ?? notImplemented),
          scan: serverStream(fake.scan ?? notImplemented),
        },
      },
    ],
  });
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  const stop = async (): Promise<void> => {
    client.close();
    await server.shutdown();
  };
  return { server, client, logs: lines, stop };
}

type Callback<Res> = (error: grpc.ServiceError | null, response: Res) => void;

/** Runs one unary call and returns its outcome; the trailing metadata of a failure is on the error. */
function callUnary<Res>(start: (callback: Callback<Res>) => unknown): Promise<{ error: grpc.ServiceError | null; response: Res }> {
  return new Promise((resolve) => {
    start((error, response) => resolve({ error, response }));
  });
}

function readAll<T>(stream: grpc.ClientReadableStream<T>): Promise<{ messages: T[]; error: grpc.ServiceError | undefined }> {
  return new Promise((resolve) => {
    const messages: T[] = [];
    stream.on('data', (message: T) => messages.push(message));
    stream.on('error', (error: grpc.ServiceError) => resolve({ messages, error }));
    stream.on('end', () => resolve({ messages, error: undefined }));
  });
}

test('a unary handler answers through the generated client', async () => {
  const kv = await startKV({
    get: async (request) => ({ found: true, value: Buffer.from(`value of ${request.key}`), version: 3 }),
  });
  try {
    assert.match(kv.server.address, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(kv.server.port, 0);
    const { error, response } = await callUnary<GetResponse>((cb) => kv.client.get({ key: 'a', consistency: 0 }, cb));
    assert.equal(error, null);
    assert.equal(response.found, true);
    assert.equal(response.value.toString(), 'value of a');
    assert.equal(response.version, 3);
  } finally {
    await kv.stop();
  }
});

test('a ServiceError reaches the client with its code, message and trailing metadata', async () => {
  const kv = await startKV({
    put: async () => {
      throw new ServiceError(grpc.status.FAILED_PRECONDITION, 'this member is not the leader', {
        'concord-reason': 'NOT_LEADER',
        'concord-leader': '127.0.0.1:7002',
      });
    },
  });
  try {
    const { error } = await callUnary<PutResponse>((cb) => kv.client.put({ key: 'a', value: Buffer.from('v') }, cb));
    assert.ok(error);
    assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(error.details, 'this member is not the leader');
    assert.deepEqual(error.metadata.get('concord-reason'), ['NOT_LEADER']);
    assert.deepEqual(error.metadata.get('concord-leader'), ['127.0.0.1:7002']);
    // Expected failures are API answers, not log noise.
    assert.equal(kv.logs().filter((line) => line['msg'] === 'handler failed').length, 0);
  } finally {
    await kv.stop();
  }
});

test('a plain Error becomes INTERNAL "internal error"; the details go to the log only', async () => {
  const kv = await startKV({
    get: async () => {
      throw new Error('ENOENT: /var/lib/concord/secret-path');
    },
  });
  try {
    const { error } = await callUnary<GetResponse>((cb) => kv.client.get({ key: 'a', consistency: 0 }, cb));
    assert.ok(error);
    assert.equal(error.code, grpc.status.INTERNAL);
    assert.equal(error.details, 'internal error');
    assert.ok(!JSON.stringify(error.metadata.getMap()).includes('secret-path'));
    const failures = kv.logs().filter((line) => line['msg'] === 'handler failed');
    assert.equal(failures.length, 1);
    assert.equal(failures[0]?.['method'], '/concord.v1.KV/Get');
    const logged = failures[0]?.['err'] as { message: string; stack: string };
    assert.equal(logged.message, 'ENOENT: /var/lib/concord/secret-path');
    assert.match(logged.stack, /server\.test\.js/);
  } finally {
    await kv.stop();
  }
});

test('a synchronous throw is mapped the same way', async () => {
  const kv = await startKV({
    get: (() => {
      throw new ServiceError(grpc.status.INVALID_ARGUMENT, 'key: must not be empty');
    }) as unknown as FakeKV['get'],
  });
  try {
    const { error } = await callUnary<GetResponse>((cb) => kv.client.get({ key: '', consistency: 0 }, cb));
    assert.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(error?.details, 'key: must not be empty');
  } finally {
    await kv.stop();
  }
});

test('a downstream status is relayed unchanged, trailers included', async () => {
  let downstream: KVClient | undefined;
  const kv = await startKV({
    put: async () => {
      throw new ServiceError(grpc.status.INVALID_ARGUMENT, 'value: must be at most 1048576 bytes (got 2000000)', {
        'concord-reason': 'WRONG_SHARD',
        'concord-ring-epoch': '12',
      });
    },
    // Delete forwards to Put on the same server, as the coordinator forwards to a shard.
    delete: async (request) => {
      const client = downstream as KVClient;
      const { error } = await callUnary<PutResponse>((cb) => client.put({ key: request.key, value: Buffer.alloc(0) }, cb));
      if (error !== null) throw error;
      return { deleted: true, previousVersion: 1 };
    },
  });
  downstream = new KVClient(kv.server.address, grpc.credentials.createInsecure());
  try {
    const { error } = await callUnary<DeleteResponse>((cb) => kv.client.delete({ key: 'a' }, cb));
    assert.ok(error);
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(error.details, 'value: must be at most 1048576 bytes (got 2000000)');
    assert.deepEqual(error.metadata.get('concord-reason'), ['WRONG_SHARD']);
    assert.deepEqual(error.metadata.get('concord-ring-epoch'), ['12']);
  } finally {
    downstream.close();
    await kv.stop();
  }
});

test('messages up to 8 MiB pass: a 1 MiB value with a 4 KiB key fits with room to spare', async () => {
  const kv = await startKV({
    put: async (request) => ({ version: request.value.length }),
    get: async () => ({ found: true, value: Buffer.alloc(5 * 1024 * 1024, 1), version: 1 }),
  });
  try {
    const put = await callUnary<PutResponse>((cb) => kv.client.put({ key: 'k'.repeat(4096), value: Buffer.alloc(5 * 1024 * 1024) }, cb));
    assert.equal(put.error, null);
    assert.equal(put.response.version, 5 * 1024 * 1024);
    const get = await callUnary<GetResponse>((cb) => kv.client.get({ key: 'a', consistency: 0 }, cb));
    assert.equal(get.error, null);
    assert.equal(get.response.value.length, 5 * 1024 * 1024);
  } finally {
    await kv.stop();
  }
});

test('an expired deadline: the client gets DEADLINE_EXCEEDED and the handler sees its signal fire', async () => {
  let signalFired: Promise<unknown> | undefined;
  const kv = await startKV({
    get: async (_request, call) => {
      const signal = callSignal(call);
      signalFired = once(signal, 'abort');
      await signalFired;
      return { found: false, value: Buffer.alloc(0), version: 0 };
    },
  });
  try {
    const { error } = await callUnary<GetResponse>((cb) =>
      kv.client.get({ key: 'a', consistency: 0 }, new grpc.Metadata(), { deadline: Date.now() + 200 }, cb),
    );
    assert.equal(error?.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(signalFired);
    await signalFired;
    assert.equal(kv.logs().filter((line) => line['msg'] === 'handler failed').length, 0);
  } finally {
    await kv.stop();
  }
});

test('a server stream delivers every message in order, then ends', async () => {
  const kv = await startKV({
    scan: async function* (request) {
      for (let i = 0; i < request.limit; i++) {
        yield { kvs: [{ key: `k${String(i).padStart(4, '0')}`, value: Buffer.from([i % 256]), version: i + 1 }] };
      }
    },
  });
  try {
    const { messages, error } = await readAll(kv.client.scan({ prefix: 'k', startKey: '', endKey: '', limit: 500, consistency: 0 }));
    assert.equal(error, undefined);
    assert.equal(messages.length, 500);
    messages.forEach((message, i) => assert.equal(message.kvs[0]?.version, i + 1));
  } finally {
    await kv.stop();
  }
});

test('a server stream that fails midway sends the messages so far, then the mapped status', async () => {
  const kv = await startKV({
    scan: async function* () {
      yield { kvs: [{ key: 'a', value: Buffer.alloc(0), version: 1 }] };
      yield { kvs: [{ key: 'b', value: Buffer.alloc(0), version: 2 }] };
      throw new ServiceError(grpc.status.UNAVAILABLE, 'shard group 3 has no leader', { 'concord-reason': 'NO_LEADER' });
    },
  });
  try {
    const { messages, error } = await readAll(kv.client.scan({ prefix: '', startKey: '', endKey: '', limit: 0, consistency: 0 }));
    assert.deepEqual(messages.map((message) => message.kvs[0]?.key), ['a', 'b']);
    assert.equal(error?.code, grpc.status.UNAVAILABLE);
    assert.equal(error?.details, 'shard group 3 has no leader');
    assert.deepEqual(error?.metadata.get('concord-reason'), ['NO_LEADER']);

    const kv2 = await startKV({
      scan: async function* () {
        yield { kvs: [{ key: 'a', value: Buffer.alloc(0), version: 1 }] };
        throw new RangeError('index out of range at /internal/detail');
      },
    });
    try {
      const second = await readAll(kv2.client.scan({ prefix: '', startKey: '', endKey: '', limit: 0, consistency: 0 }));
      assert.equal(second.messages.length, 1);
      assert.equal(second.error?.code, grpc.status.INTERNAL);
      assert.equal(second.error?.details, 'internal error');
      assert.equal(kv2.logs().filter((line) => line['msg'] === 'handler failed').length, 1);
    } finally {
      await kv2.stop();
    }
  } finally {
    await kv.stop();
  }
});

test('a server stream waits for a slow reader instead of buffering everything', async () => {
  const total = 1000;
  let produced = 0;
  const kv = await startKV({
    scan: async function* () {
      for (let i = 0; i < total; i++) {
        produced++;
        yield { kvs: [{ key: `k${i}`, value: Buffer.alloc(64 * 1024, i % 256), version: i + 1 }] };
      }
    },
  });
  try {
    const stream = kv.client.scan({ prefix: '', startKey: '', endKey: '', limit: 0, consistency: 0 });
    const first = await new Promise<ScanResponse>((resolve) => stream.once('data', resolve));
    stream.pause();
    assert.equal(first.kvs[0]?.version, 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // 64 MiB in all; with backpressure the producer stops once the transport buffers are full.
    assert.ok(produced < total, `the producer ran ahead of the reader (${produced} of ${total})`);
    const rest = readAll(stream);
    stream.resume();
    const { messages, error } = await rest;
    assert.equal(error, undefined);
    assert.equal(messages.length, total - 1);
    messages.forEach((message, i) => assert.equal(message.kvs[0]?.version, i + 2));
  } finally {
    await kv.stop();
  }
});

test('a cancelled server stream stops the producer and runs its cleanup', async () => {
  let cleanedUp!: () => void;
  const cleanup = new Promise<void>((resolve) => (cleanedUp = resolve));
  let produced = 0;
  const kv = await startKV({
    scan: async function* () {
      try {
        for (let i = 0; i < 1_000_000; i++) {
          produced++;
          yield { kvs: [{ key: `k${i}`, value: Buffer.alloc(1024), version: i + 1 }] };
        }
      } finally {
        cleanedUp();
      }
    },
  });
  try {
    const stream = kv.client.scan({ prefix: '', startKey: '', endKey: '', limit: 0, consistency: 0 });
    stream.on('error', () => {});
    await new Promise((resolve) => stream.once('data', resolve));
    stream.cancel();
    await cleanup;
    assert.ok(produced < 1_000_000);
  } finally {
    await kv.stop();
  }
});

function healthClient(address: string) {
  const Health = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, 'Health');
  const client = new Health(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    check(request: { service: string }, callback: (error: grpc.ServiceError | null, response: { status: string }) => void): void;
    watch(request: { service: string }): grpc.ClientReadableStream<{ status: string }>;
  };
  const check = (service: string) => callUnary<{ status: string }>((cb) => client.check({ service }, cb));
  return { client, check, watch: (service: string) => client.watch({ service }) };
}

test('health reports SERVING for the server and each service, and follows setServing', async () => {
  const kv = await startKV({});
  const health = healthClient(kv.server.address);
  try {
    assert.equal((await health.check('')).response.status, 'SERVING');
    assert.equal((await health.check('concord.v1.KV')).response.status, 'SERVING');
    assert.equal((await health.check('concord.v1.Txn')).error?.code, grpc.status.NOT_FOUND);
    kv.server.setServing('concord.v1.KV', false);
    assert.equal((await health.check('concord.v1.KV')).response.status, 'NOT_SERVING');
    kv.server.setServing('concord.v1.KV', true);
    assert.equal((await health.check('concord.v1.KV')).response.status, 'SERVING');
  } finally {
    health.client.close();
    await kv.stop();
  }
});

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

function reflect(address: string, request: Record<string, unknown>): Promise<ReflectionResponse> {
  // The reflection protos ship with @grpc/reflection; grpcurl speaks the same v1 service.
  const reflectionRoot = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '..', 'proto');
  const definition = loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [reflectionRoot], oneofs: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
  };
  const client = new loaded.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
  const stream = (client as unknown as { serverReflectionInfo(): unknown }).serverReflectionInfo() as grpc.ClientDuplexStream<Record<string, unknown>, ReflectionResponse>;
  return new Promise((resolve, reject) => {
    stream.once('data', (response: ReflectionResponse) => {
      stream.end();
      client.close();
      resolve(response);
    });
    stream.once('error', reject);
    stream.write(request);
  });
}

test('reflection lists the services this server serves and describes them', async () => {
  const kv = await startKV({});
  try {
    const listed = await reflect(kv.server.address, { listServices: '*' });
    const names = (listed.listServicesResponse?.service ?? []).map((service) => service.name).sort();
    assert.deepEqual(names, ['concord.v1.KV', 'grpc.health.v1.Health']);
    const described = await reflect(kv.server.address, { fileContainingSymbol: 'concord.v1.KV' });
    assert.ok((described.fileDescriptorResponse?.fileDescriptorProto.length ?? 0) >= 1, JSON.stringify(described.errorResponse));
    // Files with map fields (mapreduce.proto) must be served byte for byte as buf built them:
    // descriptors rebuilt by protobufjs carry map entries that grpcurl rejects.
    const job = await reflect(kv.server.address, { fileContainingSymbol: 'concord.v1.Job' });
    const served = (job.fileDescriptorResponse?.fileDescriptorProto ?? []).map((bytes) => Buffer.from(bytes));
    const built = splitFileDescriptorSet(readFileSync(descriptorSetPath));
    const mapreduce = built.find((file) => file.includes(Buffer.from('concord/v1/mapreduce.proto')));
    assert.ok(mapreduce, 'the descriptor set holds mapreduce.proto');
    assert.ok(served.some((file) => file.equals(mapreduce)), 'reflection serves mapreduce.proto exactly as built');
  } finally {
    await kv.stop();
  }
});

test('shutdown reports NOT_SERVING first, then refuses new calls', async () => {
  const kv = await startKV({ get: async () => ({ found: false, value: Buffer.alloc(0), version: 0 }) }, 300);
  const health = healthClient(kv.server.address);
  try {
    const watch = health.watch('');
    watch.on('error', () => {});
    const statuses: string[] = [];
    const notServing = new Promise<void>((resolve) => {
      watch.on('data', (message: { status: string }) => {
        statuses.push(message.status);
        if (message.status === 'NOT_SERVING') resolve();
      });
    });
    await new Promise((resolve) => watch.once('data', resolve));
    await Promise.all([kv.server.shutdown(), notServing]);
    assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING']);
    await kv.server.shutdown();
    const { error } = await callUnary<GetResponse>((cb) =>
      kv.client.get({ key: 'a', consistency: 0 }, new grpc.Metadata(), { deadline: Date.now() + 2000 }, cb),
    );
    assert.equal(error?.code, grpc.status.UNAVAILABLE);
  } finally {
    health.client.close();
    kv.client.close();
  }
});

test('shutdown waits for a call in flight to finish', async () => {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let entered!: () => void;
  const inHandler = new Promise<void>((resolve) => (entered = resolve));
  const kv = await startKV({
    get: async () => {
      entered();
      await released;
      return { found: true, value: Buffer.from('late'), version: 1 };
    },
  });
  try {
    const pending = callUnary<GetResponse>((cb) => kv.client.get({ key: 'a', consistency: 0 }, cb));
    await inHandler;
    const stopping = kv.server.shutdown();
    setTimeout(release, 100);
    await stopping;
    const { error, response } = await pending;
    assert.equal(error, null);
    assert.equal(response.value.toString(), 'late');
  } finally {
    kv.client.close();
  }
});

test('shutdown forces a call that outlives the grace period', async () => {
  let entered!: () => void;
  const inHandler = new Promise<void>((resolve) => (entered = resolve));
  const kv = await startKV(
    {
      get: async (_request, call) => {
        entered();
        await once(callSignal(call), 'abort');
        return { found: false, value: Buffer.alloc(0), version: 0 };
      },
    },
    200,
  );
  try {
    const pending = callUnary<GetResponse>((cb) => kv.client.get({ key: 'a', consistency: 0 }, cb));
    await inHandler;
    const started = Date.now();
    await kv.server.shutdown();
    assert.ok(Date.now() - started < 5000);
    const { error } = await pending;
    assert.ok(error !== null);
    assert.ok(kv.logs().some((line) => String(line['msg']).includes('forcing shutdown')));
  } finally {
    kv.client.close();
  }
});

test('callSignal accepts every kind of server call', () => {
  // Compile-time check: client-streaming and bidi handlers (consensus peers) can use it too.
  const forDuplex = (call: grpc.ServerDuplexStream<unknown, unknown>): AbortSignal => callSignal(call);
  const forReadable = (call: grpc.ServerReadableStream<unknown, unknown>): AbortSignal => callSignal(call);
  assert.equal(typeof forDuplex, 'function');
  assert.equal(typeof forReadable, 'function');
});

test('a host name is served on the addresses it resolves to; a port in use fails the start, naming the address', async () => {
  const kv = await startKV({ get: async () => ({ found: true, value: Buffer.from('v'), version: 3 }) });
  const { logger } = capturingLogger();
  const byName = await ConcordServer.start({ host: 'localhost', port: 0, logger, services: [] });
  try {
    assert.match(byName.address, /^localhost:\d+$/);
    const health = new grpc.Client(`127.0.0.1:${byName.port}`, grpc.credentials.createInsecure());
    try {
      await new Promise<void>((resolve, reject) => health.waitForReady(Date.now() + 5000, (error) => (error ? reject(error) : resolve())));
    } finally {
      health.close();
    }
    await assert.rejects(
      ConcordServer.start({ host: '127.0.0.1', port: kv.server.port, logger, services: [] }),
      new RegExp(`^Error: cannot listen on 127\\.0\\.0\\.1:${kv.server.port}: .*EADDRINUSE`),
    );
  } finally {
    await byName.shutdown();
    await kv.stop();
  }
});
