// The concord_grpc_server_* metrics ConcordServer records for every call it serves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { KVClient, KVService, type GetResponse, type ScanResponse } from '@concord/proto/kv';
import { ServiceError } from './errors.js';
import { createLogger } from './logging.js';
import { Metrics } from './metrics.js';
import { CLIENT_CHANNEL_OPTIONS, ConcordServer, callSignal, serverStream, unary } from './server.js';

const logger = createLogger({ service: 'server-metrics-test', level: 'silent' });

/** The value of one series, or undefined when the metric has no series with exactly these labels. */
async function seriesValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = metrics.registry.getSingleMetric(name);
  if (metric === undefined) return undefined;
  const { values } = await metric.get();
  const wanted = JSON.stringify(Object.entries(labels).sort());
  return values.find((value) => JSON.stringify(Object.entries(value.labels).sort()) === wanted)?.value;
}

/** Every series of `name`, as "label=value,..." → value. */
async function allSeries(metrics: Metrics, name: string): Promise<Map<string, number>> {
  const metric = metrics.registry.getSingleMetric(name);
  const series = new Map<string, number>();
  if (metric === undefined) return series;
  for (const value of (await metric.get()).values) {
    const key = Object.entries(value.labels)
      .sort()
      .map(([label, text]) => `${label}=${String(text)}`)
      .join(',');
    // A histogram's values are its _bucket, _sum and _count series.
    series.set(`${(value as { metricName?: string }).metricName ?? name}{${key}}`, value.value);
  }
  return series;
}

async function startKV(metrics: Metrics) {
  const server = await ConcordServer.start({
    host: '127.0.0.1',
    port: 0,
    logger,
    metrics,
    services: [
      {
        name: 'concord.v1.KV',
        definition: KVService,
        implementation: {
          get: unary(async (request: { key: string }): Promise<GetResponse> => {
            if (request.key === '') throw new ServiceError(grpc.status.INVALID_ARGUMENT, 'key: must not be empty');
            return { found: false, value: Buffer.alloc(0), version: 0 };
          }),
          put: unary(async (_request, call) => {
            // Waits for the client's deadline to pass.
            await new Promise((resolve) => callSignal(call).addEventListener('abort', resolve, { once: true }));
            return { version: 1 };
          }),
          delete: unary(async () => {
            throw new Error('a bug');
          }),
          scan: serverStream(async function* (): AsyncIterable<ScanResponse> {
            yield { kvs: [] };
            yield { kvs: [] };
          }),
        },
      },
    ],
  });
  const client = new KVClient(server.address, grpc.credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  return {
    server,
    client,
    async stop() {
      client.close();
      await server.shutdown();
    },
  };
}

function unaryCall(start: (callback: (error: grpc.ServiceError | null) => void) => unknown): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => {
    start((error) => resolve(error));
  });
}

test('every call is counted with its service, method and status code', async () => {
  const metrics = new Metrics();
  const kv = await startKV(metrics);
  try {
    for (let i = 0; i < 3; i++) assert.equal(await unaryCall((cb) => kv.client.get({ key: 'a', consistency: 0 }, cb)), null);
    assert.equal((await unaryCall((cb) => kv.client.get({ key: '', consistency: 0 }, cb)))?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal((await unaryCall((cb) => kv.client.delete({ key: 'a' }, cb)))?.code, grpc.status.INTERNAL);
    const messages: ScanResponse[] = [];
    for await (const message of kv.client.scan({ prefix: 'k', startKey: '', endKey: '', limit: 10, consistency: 0 })) {
      messages.push(message as ScanResponse);
    }
    assert.equal(messages.length, 2);

    const handled = (method: string, code: string) =>
      seriesValue(metrics, 'concord_grpc_server_handled_total', { service: 'concord.v1.KV', method, code });
    assert.equal(await handled('Get', 'OK'), 3);
    assert.equal(await handled('Get', 'INVALID_ARGUMENT'), 1);
    assert.equal(await handled('Delete', 'INTERNAL'), 1);
    assert.equal(await handled('Scan', 'OK'), 1);

    const timed = await allSeries(metrics, 'concord_grpc_server_handling_seconds');
    assert.equal(timed.get('concord_grpc_server_handling_seconds_count{method=Get,service=concord.v1.KV}'), 4);
    assert.equal(timed.get('concord_grpc_server_handling_seconds_count{method=Delete,service=concord.v1.KV}'), 1);
    assert.equal(timed.get('concord_grpc_server_handling_seconds_count{method=Scan,service=concord.v1.KV}'), 1);
    assert.equal(timed.get('concord_grpc_server_handling_seconds_bucket{le=10,method=Get,service=concord.v1.KV}'), 4);
  } finally {
    await kv.stop();
  }
});

test('a call whose deadline passes is counted as DEADLINE_EXCEEDED', async () => {
  const metrics = new Metrics();
  const kv = await startKV(metrics);
  try {
    const error = await unaryCall((cb) => kv.client.put({ key: 'a', value: Buffer.alloc(0) }, new grpc.Metadata(), { deadline: Date.now() + 100 }, cb));
    assert.equal(error?.code, grpc.status.DEADLINE_EXCEEDED);
    // The server side notices on its own timer: wait until it has.
    for (let i = 0; i < 250; i++) {
      if ((await allSeries(metrics, 'concord_grpc_server_handled_total')).size > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(
      [...(await allSeries(metrics, 'concord_grpc_server_handled_total'))],
      [['concord_grpc_server_handled_total{code=DEADLINE_EXCEEDED,method=Put,service=concord.v1.KV}', 1]],
    );
  } finally {
    await kv.stop();
  }
});

test('health checks and reflection are not counted', async () => {
  const metrics = new Metrics();
  const kv = await startKV(metrics);
  const Health = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, 'Health');
  const health = new Health(kv.server.address, grpc.credentials.createInsecure());
  try {
    const answer = await new Promise<{ status: string }>((resolve, reject) =>
      health['check']!({ service: 'concord.v1.KV' }, (error: grpc.ServiceError | null, response: { status: string }) =>
        error ? reject(error) : resolve(response),
      ),
    );
    assert.equal(answer.status, 'SERVING');
    assert.equal((await allSeries(metrics, 'concord_grpc_server_handled_total')).size, 0);
  } finally {
    health.close();
    await kv.stop();
  }
});
