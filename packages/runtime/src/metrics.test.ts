import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createLogger } from './logging.js';
import { LATENCY_BUCKETS_SECONDS, Metrics, processMetrics, startMetricsServer } from './metrics.js';

const logger = createLogger({ service: 'metrics-test', level: 'silent' });

interface Answer {
  status: number;
  contentType: string | undefined;
  body: string;
}

function get(address: string, path: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`http://${address}${path}`, { method, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, contentType: response.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('asking twice for a metric returns the same one; another shape or an unprefixed name throws', () => {
  const metrics = new Metrics();
  const spec = { name: 'concord_test_things_total', help: 'Things.', labelNames: ['kind'] } as const;
  assert.equal(metrics.counter(spec), metrics.counter(spec));
  assert.throws(() => metrics.gauge(spec), /already defined as counter \{kind\}, not gauge \{kind\}/);
  assert.throws(() => metrics.counter({ ...spec, labelNames: ['kind', 'other'] }), /already defined/);
  const histogram = { name: 'concord_test_seconds', help: 'Time.', labelNames: [], buckets: [0.1, 1] };
  assert.equal(metrics.histogram(histogram), metrics.histogram(histogram));
  assert.throws(() => metrics.histogram({ ...histogram, buckets: [1, 10] }), /already defined/);
  assert.throws(() => metrics.gauge({ name: 'things', help: 'Things.', labelNames: [] }), /start with concord_/);
});

test('separate Metrics instances share nothing', async () => {
  const first = new Metrics();
  const second = new Metrics();
  first.counter({ name: 'concord_test_calls_total', help: 'Calls.', labelNames: [] }).inc();
  second.counter({ name: 'concord_test_calls_total', help: 'Calls.', labelNames: [] });
  assert.match(await first.exposition(), /^concord_test_calls_total 1$/m);
  assert.match(await second.exposition(), /^concord_test_calls_total 0$/m);
});

test('the process registry is one instance and carries the standard process metrics', async () => {
  assert.equal(processMetrics(), processMetrics());
  const text = await processMetrics().exposition();
  assert.match(text, /^process_cpu_user_seconds_total /m);
  assert.match(text, /^nodejs_heap_size_used_bytes /m);
});

test('the latency buckets run from 0.1 ms to 10 s in increasing order', () => {
  assert.equal(LATENCY_BUCKETS_SECONDS[0], 0.0001);
  assert.equal(LATENCY_BUCKETS_SECONDS.at(-1), 10);
  for (let i = 1; i < LATENCY_BUCKETS_SECONDS.length; i++) assert.ok(LATENCY_BUCKETS_SECONDS[i]! > LATENCY_BUCKETS_SECONDS[i - 1]!);
});

test('the metrics server serves the registry on GET /metrics and 404 on anything else', async () => {
  const metrics = new Metrics();
  metrics.gauge({ name: 'concord_test_level', help: 'A level.', labelNames: ['group'] }).set({ group: 'g1' }, 7);
  metrics.histogram({ name: 'concord_test_seconds', help: 'Time.', labelNames: [], buckets: LATENCY_BUCKETS_SECONDS }).observe(0.003);
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, logger });
  try {
    assert.match(server.address, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(server.address, '127.0.0.1:0');
    const answer = await get(server.address, '/metrics');
    assert.equal(answer.status, 200);
    assert.equal(answer.contentType, 'text/plain; version=0.0.4; charset=utf-8');
    assert.match(answer.body, /^# TYPE concord_test_level gauge$/m);
    assert.match(answer.body, /^concord_test_level\{group="g1"\} 7$/m);
    assert.match(answer.body, /^concord_test_seconds_bucket\{le="0.005"\} 1$/m);
    assert.match(answer.body, /^concord_test_seconds_count 1$/m);
    // Only what this registry holds: no process metrics from the process-wide one.
    assert.doesNotMatch(answer.body, /process_cpu/);

    assert.equal((await get(server.address, '/metrics?debug=1')).status, 200);
    assert.equal((await get(server.address, '/')).status, 404);
    assert.equal((await get(server.address, '/metrics/extra')).status, 404);
    assert.equal((await get(server.address, '/metrics', 'POST')).status, 404);
  } finally {
    await server.close();
  }
  await assert.rejects(get(server.address, '/metrics'), /ECONNREFUSED/);
});

test('close() does not wait for a scraper that keeps its connection open', async () => {
  const server = await startMetricsServer({ host: '127.0.0.1', port: 0, registry: new Metrics().registry, logger });
  const keepAlive = await new Promise<number>((resolve, reject) => {
    const req = request(`http://${server.address}/metrics`, { headers: { connection: 'keep-alive' } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(keepAlive, 200);
  await server.close();
});

test('a port already in use fails the start, naming the address', async () => {
  const first = await startMetricsServer({ host: '127.0.0.1', port: 0, registry: new Metrics().registry, logger });
  try {
    const port = Number(first.address.split(':')[1]);
    await assert.rejects(
      startMetricsServer({ host: '127.0.0.1', port, registry: new Metrics().registry, logger }),
      new RegExp(`cannot serve metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`),
    );
  } finally {
    await first.close();
  }
});

test('hot metrics print exactly as prom-client prints the same observations', async () => {
  const hot = new Metrics();
  const reference = new Metrics();
  const spec = { help: 'h', labelNames: ['service', 'code'] as const };
  const buckets = [0.001, 0.01, 0.1, 1];
  const hotHistogram = hot.hotHistogram({ name: 'concord_test_seconds', buckets, ...spec });
  const referenceHistogram = reference.histogram({ name: 'concord_test_seconds', buckets, ...spec });
  const hotCounter = hot.hotCounter({ name: 'concord_test_total', ...spec });
  const referenceCounter = reference.counter({ name: 'concord_test_total', ...spec });
  const samples: [string, string, number][] = [
    ['a', 'OK', 0.0005],
    ['a', 'OK', 0.001],
    ['a', 'OK', 0.05],
    ['b', 'NOT_FOUND', 3],
    ['a', 'OK', 1],
    ['b', 'NOT_FOUND', 0.02],
  ];
  for (const [service, code, value] of samples) {
    hotHistogram.child({ service, code }).observe(value);
    referenceHistogram.observe({ service, code }, value);
    hotCounter.child({ service, code }).inc();
    referenceCounter.inc({ service, code });
  }
  hotCounter.child({ service: 'a', code: 'OK' }).inc(2.5);
  referenceCounter.inc({ service: 'a', code: 'OK' }, 2.5);
  assert.equal(await hot.exposition(), await reference.exposition());
  assert.throws(() => hotCounter.child({ service: 'a', code: 'OK' }).inc(-1), /only goes up/);
  assert.throws(() => hotHistogram.child({ service: 'a' } as never), /label code is missing/);
  assert.throws(() => hot.histogram({ name: 'concord_test_seconds', buckets, ...spec }), /already defined/);
});

test('a sampled gauge reads its functions at each scrape, as prom-client prints a gauge; a removed series is gone', async () => {
  const sampled = new Metrics();
  const spec = { name: 'concord_test_bytes', help: 'h', labelNames: ['group', 'kind'] as const };
  const gauge = sampled.sampledGauge(spec);
  let live = 10;
  const removeLive = gauge.sample({ group: 'g1', kind: 'live' }, () => live);
  gauge.sample({ group: 'g1', kind: 'dead' }, () => 3);
  const printed = async (values: [string, number][]): Promise<string> => {
    const reference = new Metrics();
    const referenceGauge = reference.gauge(spec);
    for (const [kind, value] of values) referenceGauge.set({ group: 'g1', kind }, value);
    return reference.exposition();
  };
  assert.equal(await sampled.exposition(), await printed([['live', 10], ['dead', 3]]));
  live = 42;
  assert.equal(await sampled.exposition(), await printed([['live', 42], ['dead', 3]]));
  gauge.sample({ group: 'g1', kind: 'dead' }, () => 7);
  removeLive();
  assert.equal(await sampled.exposition(), await printed([['dead', 7]]));
  assert.equal(sampled.sampledGauge(spec), gauge);
  assert.throws(() => sampled.gauge(spec), /already defined as sampled gauge/);
});
