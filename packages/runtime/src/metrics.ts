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

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string> | HotCounter<string> | HotHistogram<string> | SampledGauge<string>;

/** One series of a metric as prom-client's registry prints it. */
interface SeriesValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** A child of a hot metric, bound to one set of label values. */
export interface HotHistogramChild {
  observe(value: number): void;
}

export interface HotCounterChild {
  inc(amount?: number): void;
}

class HistogramSeries implements HotHistogramChild {
  /** counts[i]: observations ≤ bounds[i] and above bounds[i - 1]; the last: above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]! += 1;
    this.sum += value;
    this.count += 1;
  }
}

class CounterSeries implements HotCounterChild {
  value = 0;

  constructor(readonly labels: Readonly<Record<string, string>>) {}

  inc(amount = 1): void {
    if (!(amount >= 0)) throw new Error(`a counter only goes up (got ${amount})`);
    this.value += amount;
  }
}

/** The key of a set of label values, in the order of the label names. */
function seriesKey(labelNames: readonly string[], labels: Readonly<Record<string, string>>): string {
  return labelNames.map((name) => {
    const value = labels[name];
    if (value === undefined) throw new Error(`label ${name} is missing`);
    return value;
  }).join('\u0000');
}

/** What the hot metrics share: children bound to label values, kept by those values. */
abstract class HotMetric<Label extends string, Series extends { readonly labels: Readonly<Record<string, string>> }> {
  readonly aggregator = 'sum';
  protected readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly Label[],
  ) {}

  abstract readonly type: string;

  protected abstract newSeries(labels: Readonly<Record<string, string>>): Series;

  protected abstract values(): SeriesValue[];

  protected seriesFor(labels: Readonly<Record<Label, string>>): Series {
    const key = seriesKey(this.labelNames, labels);
    let series = this.series.get(key);
    if (series === undefined) {
      series = this.newSeries({ ...labels });
      this.series.set(key, series);
    }
    return series;
  }

  /** What prom-client's registry reads. */
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: SeriesValue[] }> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() });
  }

  reset(): void {
    this.series.clear();
  }
}

/**
 * A histogram for hot paths, read like any other: its children are bound to their label values
 * once, and observing through one allocates and hashes nothing (prom-client's observe builds a
 * label object, a closure and a hash string on every call). Keep the children, not the metric.
 */
export class HotHistogram<Label extends string> extends HotMetric<Label, HistogramSeries> {
  readonly type = 'histogram';

  constructor(name: string, help: string, labelNames: readonly Label[], private readonly bounds: readonly number[]) {
    super(name, help, labelNames);
  }

  child(labels: Readonly<Record<Label, string>>): HotHistogramChild {
    return this.seriesFor(labels);
  }

  protected newSeries(labels: Readonly<Record<string, string>>): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }

  protected values(): SeriesValue[] {
    const values: SeriesValue[] = [];
    for (const series of this.series.values()) {
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += series.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { le: bound, ...series.labels }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...series.labels }, value: series.count });
      values.push({ metricName: `${this.name}_sum`, labels: series.labels, value: series.sum });
      values.push({ metricName: `${this.name}_count`, labels: series.labels, value: series.count });
    }
    return values;
  }
}

class SampledSeries {
  constructor(
    readonly labels: Readonly<Record<string, string>>,
    public read: () => number,
  ) {}
}

/**
 * A gauge read when the registry is scraped: each child is a function (the size of a store, say),
 * so the code that owns the value updates nothing. `sample` binds a set of label values to a
 * function (replacing the one bound before); the function it returns removes the series, unless a
 * later `sample` has bound it again.
 */
export class SampledGauge<Label extends string> extends HotMetric<Label, SampledSeries> {
  readonly type = 'gauge';

  sample(labels: Readonly<Record<Label, string>>, read: () => number): () => void {
    const series = this.seriesFor(labels);
    series.read = read;
    return () => {
      // Unless another sample has taken the series over since.
      if (series.read !== read) return;
      for (const [key, value] of this.series) if (value === series) this.series.delete(key);
    };
  }

  protected newSeries(labels: Readonly<Record<string, string>>): SampledSeries {
    return new SampledSeries(labels, () => 0);
  }

  protected values(): SeriesValue[] {
    return [...this.series.values()].map((series) => ({ labels: series.labels, value: series.read() }));
  }
}

/** A counter for hot paths: see HotHistogram. */
export class HotCounter<Label extends string> extends HotMetric<Label, CounterSeries> {
  readonly type = 'counter';

  child(labels: Readonly<Record<Label, string>>): HotCounterChild {
    return this.seriesFor(labels);
  }

  protected newSeries(labels: Readonly<Record<string, string>>): CounterSeries {
    return new CounterSeries(labels);
  }

  protected values(): SeriesValue[] {
    return [...this.series.values()].map((series) => ({ labels: series.labels, value: series.value }));
  }
}

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

  /** A counter whose children count without allocating (HotCounter), for calls on hot paths. */
  hotCounter<Label extends string>(spec: MetricSpec<Label>): HotCounter<Label> {
    return this.getOrCreate(spec, 'hot counter', () => this.register(new HotCounter(spec.name, spec.help, [...spec.labelNames]))) as HotCounter<Label>;
  }

  /** A histogram whose children observe without allocating (HotHistogram), for calls on hot paths. */
  hotHistogram<Label extends string>(spec: HistogramSpec<Label>): HotHistogram<Label> {
    const shape = `hot histogram ${spec.buckets.join(',')}`;
    return this.getOrCreate(spec, shape, () => this.register(new HotHistogram(spec.name, spec.help, [...spec.labelNames], [...spec.buckets]))) as HotHistogram<Label>;
  }

  /** A gauge whose series are functions read at each scrape (SampledGauge). */
  sampledGauge<Label extends string>(spec: MetricSpec<Label>): SampledGauge<Label> {
    return this.getOrCreate(spec, 'sampled gauge', () => this.register(new SampledGauge(spec.name, spec.help, [...spec.labelNames]))) as SampledGauge<Label>;
  }

  private register<M extends HotCounter<string> | HotHistogram<string> | SampledGauge<string>>(metric: M): M {
    // prom-client's registry reads any object with a name, help, type, aggregator and get().
    this.registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
    return metric;
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
