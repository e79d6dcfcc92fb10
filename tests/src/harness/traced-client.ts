// A traced SDK client, run as its own process the way every Concord process runs:
//
//   node --import @concord/runtime/register tests/dist/harness/traced-client.js <coordinator> <key> <value>
//
// with OTEL_* pointing at a collector and CONCORD_SERVICE_NAME naming it. Under one root span it
// connects with coordinator routing, puts <key>=<value> and reads it back, then prints one JSON line
// {"traceId", "version", "value"} and flushes its spans. A process of its own because the OpenTelemetry
// gRPC instrumentation must be in place before @grpc/grpc-js and the generated clients load (see
// packages/runtime/src/telemetry.ts), which a test file that imports them itself cannot arrange.
import { ConcordClient } from '@concord/client';
import { flushTelemetry, startTelemetry, tracer } from '@concord/runtime';

/** Bound on flushing the spans at the end. */
const FLUSH_TIMEOUT_MS = 5_000;
const CALL_DEADLINE_MS = 10_000;
const ROOT_SPAN_NAME = 'test-client put-and-get';

async function main(): Promise<void> {
  const [address, key, value] = process.argv.slice(2);
  if (address === undefined || key === undefined || value === undefined) {
    process.stderr.write('usage: traced-client <coordinator host:port> <key> <value>\n');
    process.exit(2);
  }
  // register.ts started it already; this returns its handle.
  if (!startTelemetry('concord-test-client').enabled) {
    process.stderr.write('traced-client: telemetry is off: run it with --import @concord/runtime/register and OTEL_EXPORTER_OTLP_ENDPOINT set\n');
    process.exit(2);
  }
  const result = await tracer.startActiveSpan(ROOT_SPAN_NAME, { root: true }, async (span) => {
    try {
      const client = await ConcordClient.connect({ address, routing: 'coordinator', deadlineMs: CALL_DEADLINE_MS });
      try {
        const put = await client.put(key, value);
        const got = await client.get(key);
        return { traceId: span.spanContext().traceId, version: put.version, value: got.value.toString('utf8') };
      } finally {
        client.close();
      }
    } finally {
      span.end();
    }
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
  await flushTelemetry(FLUSH_TIMEOUT_MS);
}

main().catch((error: unknown) => {
  process.stderr.write(`traced-client: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
