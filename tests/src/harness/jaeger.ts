// A real Jaeger for tests: .tools/bin/jaeger (Jaeger v2, built by `bash scripts/install-tools.sh
// jaeger`) with deploy/local/jaeger.yaml — traces in memory, OTLP gRPC and HTTP in, the query HTTP
// API out — every listener on its own free port on 127.0.0.1, so it collides neither with
// `npm start -- --jaeger` nor with another test. Tests read traces back through the query API
// (/api/traces), as the Jaeger UI does.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { freePorts } from './cluster.js';
import { sleep } from './grpc.js';
import { childEnv, repoRoot } from './paths.js';
import { track } from './reaper.js';

/** The binary scripts/tools/jaeger.sh installs. */
export const JAEGER_BINARY = join(repoRoot, '.tools', 'bin', 'jaeger');
/** The configuration it runs with; the JAEGER_* variables below name its listeners. */
export const JAEGER_CONFIG = join(repoRoot, 'deploy', 'local', 'jaeger.yaml');

const DEFAULT_READY_TIMEOUT_MS = 30_000;
/** SIGTERM gets this long before SIGKILL. */
const STOP_GRACE_MS = 5_000;
const POLL_MS = 100;
const KEPT_OUTPUT_LINES = 200;
/** Attempts at starting when a chosen port was taken in between (a race with other programs). */
const PORT_RACE_ATTEMPTS = 3;
/** Deadline of one query API request. */
const QUERY_TIMEOUT_MS = 5_000;

/** One span as the query API returns it (the fields the tests read). */
export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: 'CHILD_OF' | 'FOLLOWS_FROM'; traceID: string; spanID: string }[];
  /** Microseconds since the epoch. */
  startTime: number;
  duration: number;
  tags: { key: string; type: string; value: unknown }[];
  processID: string;
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: { key: string; value: unknown }[] }>;
  warnings: string[] | null;
}

export interface TraceQuery {
  service: string;
  /** Only traces with a span starting at or after this time (ms since the epoch). */
  sinceMs?: number;
  /** At most this many traces; default 1000. */
  limit?: number;
}

export interface RunningJaeger {
  /** host:port of the OTLP gRPC receiver. */
  readonly otlpGrpcAddress: string;
  /** http://host:port of the OTLP HTTP receiver: what OTEL_EXPORTER_OTLP_ENDPOINT takes. */
  readonly otlpHttpUrl: string;
  /** http://host:port of the query HTTP API (and UI). */
  readonly queryUrl: string;
  /**
   * The OTEL_* variables that make a Concord process export its spans here, over OTLP/HTTP, at
   * once (a short batch delay, so a test need not wait out the default 5 s).
   */
  otelEnv(): Record<string, string>;
  /** The trace with this id (32 hex digits), or undefined while Jaeger has none of its spans. */
  trace(traceId: string): Promise<JaegerTrace | undefined>;
  /** Traces with at least one span of `service`. */
  traces(query: TraceQuery): Promise<JaegerTrace[]>;
  /** The service names Jaeger has received spans from. */
  services(): Promise<string[]>;
  /** Jaeger's last `lines` lines of output (default 40), for failure messages. */
  logs(lines?: number): string;
  /** SIGTERM, SIGKILL after a grace period. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts Jaeger and resolves once its health check says every component runs. Fails, naming the
 * install command, when the binary is missing.
 */
export async function startJaeger({ readyTimeoutMs = DEFAULT_READY_TIMEOUT_MS }: { readyTimeoutMs?: number } = {}): Promise<RunningJaeger> {
  if (!existsSync(JAEGER_BINARY)) {
    throw new Error(`Jaeger is not installed (${JAEGER_BINARY} is missing): run \`bash scripts/install-tools.sh jaeger\` (it builds Jaeger with Go)`);
  }
  let lastError: unknown;
  for (let attempt = 1; attempt <= PORT_RACE_ATTEMPTS; attempt++) {
    try {
      return await startOnce(readyTimeoutMs);
    } catch (error) {
      lastError = error;
      if (!(error instanceof Error && /address already in use/i.test(error.message))) break;
    }
  }
  throw lastError;
}

async function startOnce(readyTimeoutMs: number): Promise<RunningJaeger> {
  const [otlpGrpc, otlpHttp, queryHttp, queryGrpc, health] = (await freePorts(5)).map((port) => `127.0.0.1:${port}`) as [string, string, string, string, string];
  const output: string[] = [];
  const note = (line: string): void => {
    output.push(line);
    if (output.length > KEPT_OUTPUT_LINES) output.splice(0, output.length - KEPT_OUTPUT_LINES);
  };
  const child: ChildProcess = spawn(JAEGER_BINARY, ['--config', JAEGER_CONFIG], {
    cwd: repoRoot,
    env: childEnv({
      JAEGER_OTLP_GRPC_ENDPOINT: otlpGrpc,
      JAEGER_OTLP_HTTP_ENDPOINT: otlpHttp,
      JAEGER_QUERY_HTTP_ENDPOINT: queryHttp,
      JAEGER_QUERY_GRPC_ENDPOINT: queryGrpc,
      JAEGER_HEALTH_ENDPOINT: health,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream }).on('line', note);
  const closed = new Promise<string>((resolve) => {
    child.once('error', (error) => resolve(`could not be started: ${error.message}`));
    child.once('close', (code, signal) => resolve(`ended (${signal ?? `exit ${code}`})`));
  });
  let exit: string | undefined;
  void closed.then((how) => {
    exit = how;
  });
  const logs = (lines = 40): string =>
    output
      .slice(-lines)
      .map((line) => `  jaeger | ${line}`)
      .join('\n');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (exit !== undefined) return;
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), STOP_GRACE_MS);
      });
      const how = await Promise.race([closed, grace]);
      clearTimeout(timer);
      if (how === 'timeout') {
        child.kill('SIGKILL');
        await closed;
      }
    })());

  // Ready: the health check answers 200 once every pipeline and extension has started.
  const deadline = Date.now() + readyTimeoutMs;
  let last = 'no answer yet';
  for (;;) {
    if (exit !== undefined) {
      await closed;
      // 'close' comes after the output is drained, so the error is in the logs.
      throw new Error(`jaeger ${exit} before it was ready\n${logs()}`);
    }
    try {
      const response = await fetch(`http://${health}/status`, { signal: AbortSignal.timeout(1_000) });
      if (response.ok) break;
      last = `health check answered ${response.status}: ${await response.text()}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`jaeger was not ready within ${readyTimeoutMs} ms (last: ${last})\n${logs()}`);
    }
    await sleep(POLL_MS);
  }

  const queryUrl = `http://${queryHttp}`;
  const getJson = async <T>(path: string): Promise<{ status: number; body: T }> => {
    const response = await fetch(`${queryUrl}${path}`, { signal: AbortSignal.timeout(QUERY_TIMEOUT_MS) });
    const text = await response.text();
    try {
      return { status: response.status, body: JSON.parse(text) as T };
    } catch {
      throw new Error(`jaeger ${path} answered ${response.status} with ${text.slice(0, 500)}`);
    }
  };

  return {
    otlpGrpcAddress: otlpGrpc,
    otlpHttpUrl: `http://${otlpHttp}`,
    queryUrl,
    otelEnv: () => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://${otlpHttp}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    }),
    async trace(traceId) {
      const { status, body } = await getJson<{ data: JaegerTrace[] | null }>(`/api/traces/${traceId}`);
      if (status === 404) return undefined;
      if (status !== 200) throw new Error(`jaeger /api/traces/${traceId} answered ${status}: ${JSON.stringify(body).slice(0, 500)}`);
      return body.data?.[0];
    },
    async traces({ service, sinceMs, limit = 1000 }) {
      const params = new URLSearchParams({ service, limit: String(limit) });
      if (sinceMs !== undefined) {
        params.set('start', String(sinceMs * 1000));
        params.set('end', String((Date.now() + 60_000) * 1000));
      } else {
        params.set('lookback', '1h');
      }
      const path = `/api/traces?${params.toString()}`;
      const { status, body } = await getJson<{ data: JaegerTrace[] | null; errors: unknown }>(path);
      if (status !== 200) throw new Error(`jaeger ${path} answered ${status}: ${JSON.stringify(body).slice(0, 500)}`);
      return body.data ?? [];
    },
    async services() {
      const { status, body } = await getJson<{ data: string[] | null }>('/api/services');
      if (status !== 200) throw new Error(`jaeger /api/services answered ${status}: ${JSON.stringify(body).slice(0, 500)}`);
      return body.data ?? [];
    },
    logs,
    stop,
  };
}

/** The service name of a span's process. */
export function serviceOf(trace: JaegerTrace, span: JaegerSpan): string {
  return trace.processes[span.processID]?.serviceName ?? '(unknown process)';
}

/** A span's tag value, or undefined. */
export function tagOf(span: JaegerSpan, key: string): unknown {
  return span.tags.find((tag) => tag.key === key)?.value;
}

/** The span id of a span's parent (its CHILD_OF reference), or undefined for a root. */
export function parentOf(span: JaegerSpan): string | undefined {
  return span.references.find((reference) => reference.refType === 'CHILD_OF')?.spanID;
}

/** Whether `descendant` is `ancestor` or below it in the trace. */
export function isDescendant(trace: JaegerTrace, descendant: JaegerSpan, ancestor: JaegerSpan): boolean {
  const byId = new Map(trace.spans.map((span) => [span.spanID, span]));
  let current: JaegerSpan | undefined = descendant;
  for (let hops = 0; current !== undefined && hops <= trace.spans.length; hops++) {
    if (current.spanID === ancestor.spanID) return true;
    const parent = parentOf(current);
    current = parent === undefined ? undefined : byId.get(parent);
  }
  return false;
}

/** One line per span, indented by depth: for failure messages. */
export function describeTrace(trace: JaegerTrace): string {
  const children = new Map<string | undefined, JaegerSpan[]>();
  const ids = new Set(trace.spans.map((span) => span.spanID));
  for (const span of trace.spans) {
    const parent = parentOf(span);
    const key = parent !== undefined && ids.has(parent) ? parent : undefined;
    children.set(key, [...(children.get(key) ?? []), span]);
  }
  const lines: string[] = [`trace ${trace.traceID}`];
  const walk = (parent: string | undefined, depth: number): void => {
    for (const span of (children.get(parent) ?? []).sort((a, b) => a.startTime - b.startTime)) {
      const tags = span.tags
        .filter((tag) => tag.key.startsWith('concord.') || tag.key === 'span.kind' || tag.key === 'rpc.grpc.status_code')
        .map((tag) => `${tag.key}=${String(tag.value)}`)
        .join(' ');
      lines.push(`${'  '.repeat(depth + 1)}${serviceOf(trace, span)}: ${span.operationName} [${span.spanID}] ${tags}`);
      if (depth < trace.spans.length) walk(span.spanID, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines.join('\n');
}
