// OpenTelemetry for a Concord process, configured only by the standard OTEL_* variables. gRPC
// calls get client and server spans from @opentelemetry/instrumentation-grpc, which patches the
// prototypes of @grpc/grpc-js; context travels in gRPC metadata as W3C traceparent.
import { createRequire } from 'node:module';
import {
  TraceFlags,
  isSpanContextValid,
  trace,
  type Attributes,
  type Context,
  type Link,
  type SpanKind,
  type Tracer,
} from '@opentelemetry/api';

export interface TelemetryHandle {
  /** Flushes and stops exporters. */
  shutdown(): Promise<void>;
  /** Whether an exporter is configured (some OTEL_* variable asked for one). */
  enabled: boolean;
}

/** Matches a full gRPC method path such as "/grpc.health.v1.Health/Check". */
export type GrpcMethodPattern = string | RegExp;

/**
 * Methods that get no spans: health probes run every few seconds and reflection is tooling, so
 * their spans would bury the traces people look for. Consensus adds its peer stream.
 */
const ignoredGrpcMethods: GrpcMethodPattern[] = [
  '/grpc.health.v1.Health/Check',
  '/grpc.health.v1.Health/Watch',
  /^\/grpc\.reflection\.v1(alpha)?\.ServerReflection\//,
];

/**
 * Adds methods (full paths, or regular expressions over them) that get neither client nor server
 * spans, nor children of those; e.g. `ignoreGrpcMethods('/concord.v1.Consensus/Send')` for
 * heartbeat traffic. Takes effect immediately, also after startTelemetry.
 */
export function ignoreGrpcMethods(...patterns: GrpcMethodPattern[]): void {
  ignoredGrpcMethods.push(...patterns);
}

/** Whether spans of this method path are suppressed. */
export function isIgnoredGrpcMethod(path: string): boolean {
  return ignoredGrpcMethods.some((pattern) => (typeof pattern === 'string' ? pattern === path : pattern.test(path)));
}

/**
 * Whether the OTEL_* variables ask for trace export. Without any, a process (a test, `npm start`)
 * starts no SDK and never tries to reach a collector that is not there.
 */
export function telemetryRequested(env: Readonly<Record<string, string | undefined>> = process.env): boolean {
  const set = (name: string): boolean => (env[name] ?? '').trim() !== '';
  if ((env['OTEL_SDK_DISABLED'] ?? '').trim().toLowerCase() === 'true') return false;
  const exporter = (env['OTEL_TRACES_EXPORTER'] ?? '').trim().toLowerCase();
  if (exporter === 'none') return false;
  return set('OTEL_EXPORTER_OTLP_ENDPOINT') || set('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') || exporter !== '';
}

// --- Sampling -------------------------------------------------------------------------------
// The instrumentation's own ignore list sees only the method name ("Check", "Watch"), which cannot
// tell grpc.health.v1.Health/Watch from concord.v1.MapReduce/Watch. Its span names carry the full
// path ("grpc.<service>/<method>"), so the filter lives in the sampler instead. Passing a sampler
// to the SDK replaces the one it would read from OTEL_TRACES_SAMPLER, so that variable is honoured
// here (same values and semantics as the SDK).

const NOT_RECORD = 0;
const RECORD_AND_SAMPLED = 2;

interface SamplingResult {
  decision: typeof NOT_RECORD | 1 | typeof RECORD_AND_SAMPLED;
}

interface Sampler {
  shouldSample(context: Context, traceId: string, spanName: string, spanKind: SpanKind, attributes: Attributes, links: Link[]): SamplingResult;
  toString(): string;
}

const alwaysOn: Sampler = { shouldSample: () => ({ decision: RECORD_AND_SAMPLED }), toString: () => 'AlwaysOnSampler' };
const alwaysOff: Sampler = { shouldSample: () => ({ decision: NOT_RECORD }), toString: () => 'AlwaysOffSampler' };

/** Samples a fixed fraction of traces, deciding on the trace id so every process agrees. */
function traceIdRatio(ratio: number): Sampler {
  const bounded = Number.isNaN(ratio) ? 1 : Math.min(1, Math.max(0, ratio));
  const upperBound = bounded === 1 ? 2 ** 32 : Math.floor(bounded * 0xffffffff);
  return {
    shouldSample: (_context, traceId) => {
      let accumulation = 0;
      for (let i = 0; i + 8 <= traceId.length && i < 32; i += 8) {
        accumulation = (accumulation ^ Number.parseInt(traceId.slice(i, i + 8), 16)) >>> 0;
      }
      return { decision: accumulation < upperBound ? RECORD_AND_SAMPLED : NOT_RECORD };
    },
    toString: () => `TraceIdRatioBased{${bounded}}`,
  };
}

/** Follows the caller's sampled flag; decides with `root` only at the start of a trace. */
function parentBased(root: Sampler): Sampler {
  return {
    shouldSample: (context, traceId, spanName, spanKind, attributes, links) => {
      const parent = trace.getSpanContext(context);
      if (parent === undefined || !isSpanContextValid(parent)) return root.shouldSample(context, traceId, spanName, spanKind, attributes, links);
      return { decision: (parent.traceFlags & TraceFlags.SAMPLED) !== 0 ? RECORD_AND_SAMPLED : NOT_RECORD };
    },
    toString: () => `ParentBased{root=${root.toString()}}`,
  };
}

/** The sampler OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG name; default parentbased_always_on. */
export function samplerFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): Sampler {
  const name = (env['OTEL_TRACES_SAMPLER'] ?? '').trim().toLowerCase() || 'parentbased_always_on';
  const arg = env['OTEL_TRACES_SAMPLER_ARG'];
  const ratio = arg === undefined || arg.trim() === '' ? 1 : Number(arg);
  switch (name) {
    case 'always_on':
      return alwaysOn;
    case 'always_off':
      return alwaysOff;
    case 'traceidratio':
      return traceIdRatio(ratio);
    case 'parentbased_always_off':
      return parentBased(alwaysOff);
    case 'parentbased_traceidratio':
      return parentBased(traceIdRatio(ratio));
    default:
      return parentBased(alwaysOn);
  }
}

/** Drops spans of ignored gRPC methods, then defers to `delegate`. */
export function ignoringSampler(delegate: Sampler): Sampler {
  return {
    shouldSample: (context, traceId, spanName, spanKind, attributes, links) => {
      if (spanName.startsWith('grpc.') && isIgnoredGrpcMethod(`/${spanName.slice('grpc.'.length)}`)) return { decision: NOT_RECORD };
      return delegate.shouldSample(context, traceId, spanName, spanKind, attributes, links);
    },
    toString: () => `IgnoringGrpcMethods{${delegate.toString()}}`,
  };
}

// --- Start ----------------------------------------------------------------------------------

let started: TelemetryHandle | undefined;

const disabled: TelemetryHandle = { enabled: false, shutdown: async () => {} };

/**
 * Starts the OpenTelemetry NodeSDK configured only by the standard OTEL_* variables, with
 * service.name = serviceName unless OTEL_SERVICE_NAME is set. No-op when no exporter is configured.
 * Calling it again returns the first handle (so `main` can get the handle register.ts created).
 *
 * Run it through `node --import @concord/runtime/register`, before any application module loads:
 * grpc-js builds each generated client class from the Client methods as they are when the class is
 * made (ts-proto does that when its module loads), so a later start still gives servers their spans
 * but leaves those clients untraced, and context would stop at them.
 *
 * Metrics and logs are exported over OTLP only when OTEL_METRICS_EXPORTER / OTEL_LOGS_EXPORTER ask
 * for it: the usual target (Jaeger) accepts traces only, and Concord serves metrics on /metrics.
 */
export function startTelemetry(serviceName: string): TelemetryHandle {
  if (started !== undefined) return started;
  if (!telemetryRequested()) {
    started = disabled;
    return started;
  }
  // Loaded only when telemetry is on (the SDK pulls in every exporter), and synchronously, so the
  // patches are in place before the caller's next line.
  const require = createRequire(import.meta.url);
  const { GrpcInstrumentation } = require('@opentelemetry/instrumentation-grpc') as typeof import('@opentelemetry/instrumentation-grpc');
  // Constructing it installs a require hook that patches @grpc/grpc-js when it is require()d. An
  // ESM `import` of grpc-js does not pass through require, so require it here: the patch reaches
  // the exports object that ESM importers share, before they first read it when this runs from
  // `--import` (see register.ts).
  const grpcInstrumentation = new GrpcInstrumentation();
  require('@grpc/grpc-js');
  const { NodeSDK } = require('@opentelemetry/sdk-node') as typeof import('@opentelemetry/sdk-node');
  const env = process.env;
  const sdk = new NodeSDK({
    ...(env['OTEL_SERVICE_NAME'] ? {} : { serviceName }),
    instrumentations: [grpcInstrumentation],
    sampler: ignoringSampler(samplerFromEnv(env)),
    ...(env['OTEL_METRICS_EXPORTER'] ? {} : { metricReaders: [] }),
    ...(env['OTEL_LOGS_EXPORTER'] ? {} : { logRecordProcessors: [] }),
  });
  sdk.start();
  let stopping: Promise<void> | undefined;
  started = { enabled: true, shutdown: () => (stopping ??= sdk.shutdown()) };
  return started;
}

/**
 * Flushes and stops the SDK started by startTelemetry, waiting at most `timeoutMs` (an unreachable
 * collector must not hold up a shutdown). Safe to call when telemetry is off or already stopped.
 */
export async function flushTelemetry(timeoutMs: number): Promise<void> {
  if (started === undefined || !started.enabled) return;
  const handle = started;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  try {
    await Promise.race([handle.shutdown().catch(() => {}), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Concord's tracer (instrumentation scope "concord"). It looks the tracer up on every span rather
 * than once when this module loads: @opentelemetry/api ships a CommonJS and an ES module build,
 * and the SDK (require()d above) registers its provider through the CommonJS one. A tracer taken
 * from this module's ES module copy before that stays a no-op for good (its proxy provider never
 * gets the delegate), while a lookup after it finds the registered provider through the global
 * both copies share.
 */
export const tracer: Tracer = {
  startSpan: (name, options, context) => trace.getTracer('concord').startSpan(name, options, context),
  startActiveSpan: ((...args: Parameters<Tracer['startActiveSpan']>) =>
    (trace.getTracer('concord').startActiveSpan as (...inner: unknown[]) => unknown)(...args)) as Tracer['startActiveSpan'],
};
