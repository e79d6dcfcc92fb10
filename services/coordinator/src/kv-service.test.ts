import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { credentials, Metadata, status, type ServiceError as GrpcError } from '@grpc/grpc-js';
import { ConcordError, ShardRouter, type RouteCallOptions } from '@concord/client';
import { ReadConsistency, type KeyValue } from '@concord/proto/common';
import { KVClient, KVService, type GetResponse } from '@concord/proto/kv';
import { CLIENT_CHANNEL_OPTIONS, ConcordServer, ServiceError, createLogger } from '@concord/runtime';
import { SCAN_BATCH_MAX_KVS, createKvService, scanBatches, shardDeadline, toKvError } from './kv-service.js';

const logger = createLogger({ service: 'kv-service-test', level: 'silent' });

describe('shardDeadline', () => {
  it('takes the sooner of the client deadline and the shard timeout', () => {
    const now = 1_000_000;
    assert.equal(shardDeadline(Infinity, 5000, now).getTime(), now + 5000);
    assert.equal(shardDeadline(new Date(now + 200), 5000, now).getTime(), now + 200);
    assert.equal(shardDeadline(now + 9000, 5000, now).getTime(), now + 5000);
  });
});

describe('toKvError', () => {
  it('keeps code, message and the current version; drops routing metadata', () => {
    const metadata = new Metadata();
    metadata.set('concord-current-version', '42');
    metadata.set('concord-leader', '10.0.0.7:7101');
    metadata.set('concord-reason', 'NOT_LEADER');
    const mapped = toKvError(new ConcordError(status.ABORTED, 'key k: expected version 1 but found 42', { metadata }));
    assert.ok(mapped instanceof ServiceError);
    assert.equal(mapped.code, status.ABORTED);
    assert.equal(mapped.message, 'key k: expected version 1 but found 42');
    assert.deepEqual(mapped.metadata, { 'concord-current-version': '42' });
  });

  it('leaves anything else alone (it becomes INTERNAL at the edge)', () => {
    const bug = new TypeError('oops');
    assert.equal(toKvError(bug), bug);
  });
});

describe('scanBatches', () => {
  async function* keys(count: number, valueBytes = 1): AsyncGenerator<KeyValue> {
    for (let i = 0; i < count; i++) yield { key: `k${i}`, value: Buffer.alloc(valueBytes), version: 1 };
  }

  it('cuts batches by key count and by bytes, never sending an empty one', async () => {
    const byCount: number[] = [];
    for await (const batch of scanBatches(keys(SCAN_BATCH_MAX_KVS * 2 + 1))) byCount.push(batch.kvs.length);
    assert.deepEqual(byCount, [SCAN_BATCH_MAX_KVS, SCAN_BATCH_MAX_KVS, 1]);
    const byBytes: number[] = [];
    for await (const batch of scanBatches(keys(5, 600 * 1024))) byBytes.push(batch.kvs.length);
    assert.deepEqual(byBytes, [2, 2, 1]);
    const none: number[] = [];
    for await (const batch of scanBatches(keys(0))) none.push(batch.kvs.length);
    assert.deepEqual(none, []);
  });
});

describe('KV service', () => {
  let server: ConcordServer;
  let client: KVClient;
  let ringLoads = 0;
  /** The options the last routed call got. */
  let lastRoute: RouteCallOptions | undefined;

  before(async () => {
    // A router that must never be reached for bad input: its ring source counts loads.
    const router = new ShardRouter({
      ringSource: async () => {
        ringLoads++;
        throw new ConcordError(status.UNAVAILABLE, 'no shards in this test');
      },
    });
    // get and put are answered here, to observe the deadline the service hands to the router.
    router.get = async (_request, options) => {
      lastRoute = options;
      return { found: false, value: Buffer.alloc(0), version: 0 };
    };
    router.put = async (_request, options) => {
      lastRoute = options;
      throw new ConcordError(status.UNAVAILABLE, 'group g1 has no leader');
    };
    server = await ConcordServer.start({
      host: '127.0.0.1',
      port: 0,
      logger,
      services: [{ name: 'concord.v1.KV', definition: KVService, implementation: createKvService({ router, shardTimeoutMs: 3000 }) }],
    });
    client = new KVClient(server.address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  });

  after(async () => {
    client.close();
    await server.shutdown();
  });

  const rejected = (invoke: (callback: (error: GrpcError | null) => void) => void): Promise<GrpcError> =>
    new Promise((resolve, reject) => invoke((error) => (error === null ? reject(new Error('expected a failure')) : resolve(error))));

  it('rejects bad fields before routing anything', async () => {
    const tooLong = await rejected((callback) => client.put({ key: 'x'.repeat(4097), value: Buffer.alloc(0) }, callback));
    assert.equal(tooLong.code, status.INVALID_ARGUMENT);
    assert.equal(tooLong.details, 'key: must be at most 4096 bytes of UTF-8 (got 4097)');
    const scan = client.scan({ prefix: 'p', startKey: 's', endKey: '', limit: 0, consistency: 0 });
    const scanError = await new Promise<GrpcError>((resolve) => scan.on('error', resolve));
    assert.equal(scanError.code, status.INVALID_ARGUMENT);
    assert.match(scanError.details, /^prefix: /);
    assert.equal(ringLoads, 0);
  });

  it("hands the router the client's deadline when it is sooner than --shard-timeout", async () => {
    const clientDeadline = new Date(Date.now() + 800);
    await new Promise<GetResponse>((resolve, reject) =>
      client.get({ key: 'a', consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE }, new Metadata(), { deadline: clientDeadline }, (error, response) =>
        error === null ? resolve(response) : reject(error),
      ),
    );
    const sooner = lastRoute?.deadline?.getTime() ?? 0;
    assert.ok(Math.abs(sooner - clientDeadline.getTime()) < 100, `deadline ${sooner} vs client ${clientDeadline.getTime()}`);

    const before = Date.now();
    await new Promise<GetResponse>((resolve, reject) =>
      client.get({ key: 'a', consistency: 0 }, (error, response) => (error === null ? resolve(response) : reject(error))),
    );
    const capped = lastRoute?.deadline?.getTime() ?? 0;
    assert.ok(capped >= before + 3000 && capped <= Date.now() + 3000, 'no client deadline: --shard-timeout');
  });

  it('relays routing failures with their code and message', async () => {
    const error = await rejected((callback) => client.put({ key: 'a', value: Buffer.from('v') }, callback));
    assert.equal(error.code, status.UNAVAILABLE);
    assert.equal(error.details, 'group g1 has no leader');
  });
});
