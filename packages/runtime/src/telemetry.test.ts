import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ROOT_CONTEXT, SpanKind, TraceFlags, trace } from '@opentelemetry/api';
import {
  ignoreGrpcMethods,
  ignoringSampler,
  isIgnoredGrpcMethod,
  samplerFromEnv,
  startTelemetry,
  telemetryRequested,
} from './telemetry.js';

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c';

test('telemetry is requested only by an OTLP endpoint or a traces exporter other than none', () => {
  assert.equal(telemetryRequested({}), false);
  assert.equal(telemetryRequested({ OTEL_SERVICE_NAME: 'shard' }), false);
  assert.equal(telemetryRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }), true);
  assert.equal(telemetryRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://jaeger:4318/v1/traces' }), true);
  assert.equal(telemetryRequested({ OTEL_TRACES_EXPORTER: 'console' }), true);
  assert.equal(telemetryRequested({ OTEL_TRACES_EXPORTER: 'none' }), false);
  assert.equal(telemetryRequested({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }), false);
  assert.equal(telemetryRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: '' }), false);
  assert.equal(telemetryRequested({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }), false);
});

test('without OTEL_* settings startTelemetry starts nothing', async () => {
  for (const name of Object.keys(process.env)) if (name.startsWith('OTEL_')) delete process.env[name];
  const handle = startTelemetry('test');
  assert.equal(handle.enabled, false);
  await handle.shutdown();
});

test('health and reflection are ignored by full path; other services with the same method names are not', () => {
  assert.equal(isIgnoredGrpcMethod('/grpc.health.v1.Health/Check'), true);
  assert.equal(isIgnoredGrpcMethod('/grpc.health.v1.Health/Watch'), true);
  assert.equal(isIgnoredGrpcMethod('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'), true);
  assert.equal(isIgnoredGrpcMethod('/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'), true);
  assert.equal(isIgnoredGrpcMethod('/concord.v1.MapReduce/Watch'), false);
  assert.equal(isIgnoredGrpcMethod('/concord.v1.KV/Get'), false);
  ignoreGrpcMethods('/concord.v1.Consensus/Send', /^\/test\.Ignored\//);
  assert.equal(isIgnoredGrpcMethod('/concord.v1.Consensus/Send'), true);
  assert.equal(isIgnoredGrpcMethod('/test.Ignored/Anything'), true);
  assert.equal(isIgnoredGrpcMethod('/concord.v1.Consensus/InstallSnapshot'), false);
});

function parentContext(sampled: boolean) {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: TRACE_ID,
    spanId: 'b7ad6b7169203331',
    traceFlags: sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
    isRemote: true,
  });
}

test('the sampler drops ignored gRPC spans and otherwise follows OTEL_TRACES_SAMPLER', () => {
  const decide = (env: Record<string, string>, spanName: string, context = ROOT_CONTEXT) =>
    ignoringSampler(samplerFromEnv(env)).shouldSample(context, TRACE_ID, spanName, SpanKind.SERVER, {}, []).decision;
  const NOT_RECORD = 0;
  const SAMPLED = 2;
  assert.equal(decide({}, 'grpc.concord.v1.KV/Get'), SAMPLED);
  assert.equal(decide({}, 'grpc.concord.v1.MapReduce/Watch'), SAMPLED);
  assert.equal(decide({}, 'grpc.grpc.health.v1.Health/Check'), NOT_RECORD);
  assert.equal(decide({}, 'grpc.grpc.health.v1.Health/Watch', parentContext(true)), NOT_RECORD);
  // parentbased_always_on (the default) follows the caller's decision.
  assert.equal(decide({}, 'grpc.concord.v1.KV/Get', parentContext(false)), NOT_RECORD);
  assert.equal(decide({}, 'grpc.concord.v1.KV/Get', parentContext(true)), SAMPLED);
  assert.equal(decide({ OTEL_TRACES_SAMPLER: 'always_off' }, 'grpc.concord.v1.KV/Get'), NOT_RECORD);
  assert.equal(decide({ OTEL_TRACES_SAMPLER: 'always_on' }, 'grpc.concord.v1.KV/Get', parentContext(false)), SAMPLED);
  assert.equal(decide({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }, 'x'), NOT_RECORD);
  assert.equal(decide({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }, 'x', parentContext(true)), SAMPLED);
  assert.equal(decide({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1' }, 'x'), SAMPLED);
});

test('the ratio sampler keeps about the requested share of traces', () => {
  const sampler = samplerFromEnv({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' });
  let kept = 0;
  const total = 4000;
  for (let i = 0; i < total; i++) {
    // A simple deterministic spread of trace ids.
    const traceId = (BigInt(i + 1) * 0x9e3779b97f4a7c15n * 0xbf58476d1ce4e5b9n).toString(16).padStart(32, '0').slice(-32);
    if (sampler.shouldSample(ROOT_CONTEXT, traceId, 'x', SpanKind.INTERNAL, {}, []).decision === 2) kept++;
  }
  assert.ok(kept > total * 0.2 && kept < total * 0.3, `kept ${kept} of ${total}`);
});

/**
 * Runs a small ESM program under `node --import @concord/runtime/register` with the console
 * exporter: a KV server and client in one process, one traced call and one health check.
 */
function runTracedProgram(env: Record<string, string>): Promise<string> {
  const runtimeUrl = new URL('./index.js', import.meta.url).href;
  const kvUrl = import.meta.resolve('@concord/proto/kv');
  const grpcUrl = import.meta.resolve('@grpc/grpc-js');
  const program = `
    const grpc = await import(${JSON.stringify(grpcUrl)});
    const { KVService, KVClient } = await import(${JSON.stringify(kvUrl)});
    const { ConcordServer, unary, createLogger, startTelemetry } = await import(${JSON.stringify(runtimeUrl)});
    const logger = createLogger({ service: 'kv-test' });
    const none = async () => { throw new Error('unused'); };
    const server = await ConcordServer.start({ host: '127.0.0.1', port: 0, logger, services: [{
      name: 'concord.v1.KV', definition: KVService, implementation: {
        get: unary(async (request) => { logger.info({ key: request.key }, 'get handled'); return { found: false, value: Buffer.alloc(0), version: 0 }; }),
        put: unary(none), delete: unary(none), scan: () => {},
      } }] });
    const client = new KVClient(server.address, grpc.credentials.createInsecure());
    await new Promise((resolve, reject) => client.get({ key: 'traced', consistency: 0 }, (e) => (e ? reject(e) : resolve())));
    const Health = grpc.makeGenericClientConstructor({ check: { path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false,
      requestSerialize: (b) => b, requestDeserialize: (b) => b, responseSerialize: (b) => b, responseDeserialize: (b) => b } }, 'Health');
    const health = new Health(server.address, grpc.credentials.createInsecure());
    await new Promise((resolve, reject) => health.check(Buffer.alloc(0), (e) => (e ? reject(e) : resolve())));
    client.close(); health.close();
    await server.shutdown();
    await startTelemetry('ignored').shutdown();
  `;
  const childEnv: Record<string, string> = { PATH: process.env['PATH'] ?? '', ...env };
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', '@concord/runtime/register', '--input-type=module', '-e', program],
      { cwd: fileURLToPath(new URL('..', import.meta.url)), env: childEnv, timeout: 30_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
}

test('under --import register, gRPC calls get client and server spans in one trace; health checks get none', async () => {
  const output = await runTracedProgram({ OTEL_TRACES_EXPORTER: 'console', CONCORD_SERVICE_NAME: 'kv-test' });
  const spans = output.split(/\n(?=\{\n)/).filter((block) => /\bname: 'grpc\./.test(block));
  const getSpans = spans.filter((block) => block.includes("name: 'grpc.concord.v1.KV/Get'"));
  assert.equal(getSpans.length, 2, output);
  const kinds = getSpans.map((block) => /\bkind: (\d)/.exec(block)?.[1]).sort();
  assert.deepEqual(kinds, [String(SpanKind.SERVER), String(SpanKind.CLIENT)].sort());
  const traceIds = new Set(getSpans.map((block) => /\btraceId: '([0-9a-f]{32})'/.exec(block)?.[1]));
  assert.equal(traceIds.size, 1, 'the server span continues the client trace');
  assert.ok(getSpans.every((block) => block.includes("'service.name': 'kv-test'")));
  // (The program text itself shows up in the resource's process.command_args, so match span names.)
  assert.ok(!output.includes("name: 'grpc.grpc.health.v1.Health/Check'"), 'health checks are not traced');
  assert.ok(spans.every((block) => block.includes("name: 'grpc.concord.v1.KV/Get'")), output);
  // The handler's log line carries the trace it ran in.
  const logLine = output.split('\n').find((line) => line.includes('"msg":"get handled"'));
  assert.ok(logLine, output);
  const logged = JSON.parse(logLine) as { trace_id?: string; span_id?: string; service?: string };
  assert.equal(logged.service, 'kv-test');
  assert.ok(traceIds.has(logged.trace_id));
  assert.match(logged.span_id ?? '', /^[0-9a-f]{16}$/);
});

test('OTEL_SERVICE_NAME wins over the name Concord passes', async () => {
  const output = await runTracedProgram({ OTEL_TRACES_EXPORTER: 'console', CONCORD_SERVICE_NAME: 'kv-test', OTEL_SERVICE_NAME: 'from-env' });
  assert.ok(output.includes("'service.name': 'from-env'"), output);
  assert.ok(!output.includes("'service.name': 'kv-test'"));
});

test('with an OTLP endpoint, spans are exported over OTLP/HTTP and flushed on shutdown; metrics and logs are not', async () => {
  const received: { path: string; body: Buffer }[] = [];
  const collector = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({ path: request.url ?? '', body: Buffer.concat(chunks) });
      response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = collector.address() as AddressInfo;
    await runTracedProgram({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, CONCORD_SERVICE_NAME: 'kv-test' });
    assert.deepEqual([...new Set(received.map((entry) => entry.path))], ['/v1/traces']);
    const exported = Buffer.concat(received.map((entry) => entry.body)).toString('latin1');
    assert.ok(exported.includes('grpc.concord.v1.KV/Get'));
    assert.ok(exported.includes('kv-test'));
    assert.ok(!exported.includes('grpc.grpc.health.v1.Health/Check'));
  } finally {
    collector.close();
  }
});

test("Concord's own spans (tracer) are recorded under --import register, and nest in the active span", async () => {
  // The SDK registers through @opentelemetry/api's CommonJS build; `tracer` comes from its ES
  // module build and was once a no-op for good, so no proposal or election span ever left a process.
  const runtimeUrl = new URL('./index.js', import.meta.url).href;
  const program = `
    const { tracer, startTelemetry } = await import(${JSON.stringify(runtimeUrl)});
    await tracer.startActiveSpan('concord-probe-parent', async (parent) => {
      tracer.startSpan('concord-probe-child').end();
      parent.end();
    });
    await startTelemetry('ignored').shutdown();
  `;
  const output = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', '@concord/runtime/register', '--input-type=module', '-e', program],
      { cwd: fileURLToPath(new URL('..', import.meta.url)), env: { PATH: process.env['PATH'] ?? '', OTEL_TRACES_EXPORTER: 'console' }, timeout: 30_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
  const blocks = output.split(/\n(?=\{\n)/);
  const parent = blocks.find((block) => block.includes("name: 'concord-probe-parent'"));
  const child = blocks.find((block) => block.includes("name: 'concord-probe-child'"));
  assert.ok(parent !== undefined && child !== undefined, output);
  const parentTrace = /\btraceId: '([0-9a-f]{32})'/.exec(parent)?.[1];
  const parentId = /\bid: '([0-9a-f]{16})'/.exec(parent)?.[1];
  assert.equal(/\btraceId: '([0-9a-f]{32})'/.exec(child)?.[1], parentTrace);
  assert.match(child, new RegExp(`parentSpanContext: \\{[^}]*spanId: '${parentId}'`));
});
