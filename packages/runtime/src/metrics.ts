// Prometheus metrics of a Concord process. One registry per process (processMetrics()) holds the
// standard process and Node.js metrics (process_*, nodejs_*, unprefixed so stock dashboards work)
// and Concord's own, all named concord_<area>_<what>. A role started with --metrics-listen serves
// it on GET /metrics (startMetricsServer). The metric list is docs/metrics.md.
//
// Libraries take a `Metrics` in their options and default to processMetrics(): a test passes a
// fresh `new Metrics()` and reads exactly what its own code recorded, with nothing shared between
// tests or registered twice.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from './logging.js';

export type { Counter, Gauge, Histogram };

/** Every metric Concord defines starts with this; the process and Node.js metrics keep their standard names. */
export const METRIC_PREFIX = 'concord_';

/**
 * Bucket upper bounds (seconds) for latencies from 0.1 ms to 10 s: a local fsync or an in-memory
 * call lands in the first buckets, a cross-zone commit or a slow disk in the middle, a call that
 * waits for an election near the top.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Bucket upper bounds for counts of items in one batch (1 to 1024, doubling). */
export const BATCH_SIZE_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

export interface MetricSpec<Label extends string> {
  /** concord_<area>_<what>[_<unit>][_total]; see docs/metrics.md. */
  name: string;
  help: string;
  labelNames: readonly Label[];
}

export interface HistogramSpec<Label extends string> extends MetricSpec<Label> {
  buckets: readonly number[];
}

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

interface Registered {
  metric: AnyMetric;
  /** What a second definition must match to share the metric: type, labels and buckets. */
  shape: string;
}

export interface MetricsOptions {
  /** Also collect the standard process_* and nodejs_* metrics (CPU, memory, event loop lag, GC). */
  defaultMetrics?: boolean;
}

/**
 * A registry and get-or-create access to metrics on it. Asking twice for the same name returns
 * the same metric (so every Raft group of a process shares `concord_raft_term`, told apart by
 * labels); asking with another type, other labels or other buckets is a programming error and throws.
 */
export class Metrics {
  readonly registry: Registry;
  private readonly metrics = new Map<string, Registered>();

  constructor(options: MetricsOptions = {}) {
    this.registry = new Registry();
    if (options.defaultMetrics === true) collectDefaultMetrics({ register: this.registry });
  }

  counter<Label extends string>(spec: MetricSpec<Label>): Counter<Label> {
    return this.getOrCreate(spec, 'counter', () => new Counter({ ...this.config(spec) })) as Counter<Label>;
  }

  gauge<Label extends string>(spec: MetricSpec<Label>): Gauge<Label> {
    return this.getOrCreate(spec, 'gauge', () => new Gauge({ ...this.config(spec) })) as Gauge<Label>;
  }

  histogram<Label extends string>(spec: HistogramSpec<Label>): Histogram<Label> {
    const shape = `histogram ${spec.buckets.join(',')}`;
    return this.getOrCreate(spec, shape, () => new Histogram({ ...this.config(spec), buckets: [...spec.buckets] })) as Histogram<Label>;
  }

  /** The registry in the Prometheus text exposition format. */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  private config<Label extends string>(spec: MetricSpec<Label>): { name: string; help: string; labelNames: Label[]; registers: Registry[] } {
    return { name: spec.name, help: spec.help, labelNames: [...spec.labelNames], registers: [this.registry] };
  }

  private getOrCreate(spec: MetricSpec<string>, kind: string, create: () => AnyMetric): AnyMetric {
    if (!spec.name.startsWith(METRIC_PREFIX)) throw new Error(`metric ${spec.name}: Concord's metric names start with ${METRIC_PREFIX}`);
    const shape = `${kind} {${spec.labelNames.join(',')}}`;
    const existing = this.metrics.get(spec.name);
    if (existing !== undefined) {
      if (existing.shape !== shape) throw new Error(`metric ${spec.name} is already defined as ${existing.shape}, not ${shape}`);
      return existing.metric;
    }
    const metric = create();
    this.metrics.set(spec.name, { metric, shape });
    return metric;
  }
}

let processWide: Metrics | undefined;

/** The process's registry, with the default process metrics; created on first use. */
export function processMetrics(): Metrics {
  processWide ??= new Metrics({ defaultMetrics: true });
  return processWide;
}

export interface MetricsServerOptions {
  /** Interface to bind; an IPv6 address without brackets. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** What GET /metrics serves; default the process's registry. */
  registry?: Registry;
  logger: Logger;
}

export interface MetricsServer {
  /** host:port it listens on (the bound port when 0 was asked for). */
  readonly address: string;
  /** Stops listening and closes open connections (scrapers keep theirs alive). */
  close(): Promise<void>;
}

/** Serves GET /metrics in the Prometheus text format; every other request gets 404. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const registry = options.registry ?? processMetrics().registry;
  const { logger } = options;
  const server = createServer((request, response) => {
    serve(registry, request, response).catch((error: unknown) => {
      logger.error({ err: error }, 'collecting metrics failed');
      if (!response.headersSent) response.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      response.end('collecting metrics failed\n');
    });
  });
  const bracketed = options.host.includes(':') && !options.host.startsWith('[') ? `[${options.host}]` : options.host;
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => reject(new Error(`cannot serve metrics on ${bracketed}:${options.port}: ${error.message}`, { cause: error }));
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (error) => logger.error({ err: error }, 'metrics server failed'));
  const address = `${bracketed}:${(server.address() as AddressInfo).port}`;
  logger.info({ metrics_address: address }, 'serving metrics on /metrics');
  let closing: Promise<void> | undefined;
  return {
    address,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function serve(registry: Registry, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const path = new URL(request.url ?? '/', 'http://metrics').pathname;
  if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
    response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    response.end('not found: metrics are served on GET /metrics\n');
    return;
  }
  const body = await registry.metrics();
  response.writeHead(200, { 'Content-Type': registry.contentType });
  response.end(body);
}
