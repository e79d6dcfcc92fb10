// Turns closed-loop runs into the JSON rows of a benchmark report.
import { availableParallelism, cpus, totalmem } from 'node:os';
import type { ClosedLoopResult } from './closed-loop.js';

export interface MachineInfo {
  cpus: number;
  cpu_model: string;
  memory_gib: number;
  node: string;
  platform: string;
  arch: string;
  /**
   * Share of all cores busy in the second before the run started: other work on the machine
   * shares the cores, and a figure measured next to it is not this machine's figure.
   */
  cpu_busy_before_start: number;
}

export function machineInfo(cpuBusyBeforeStart: number): MachineInfo {
  return {
    cpus: availableParallelism(),
    cpu_model: cpus()[0]?.model.trim() ?? 'unknown',
    memory_gib: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    cpu_busy_before_start: cpuBusyBeforeStart,
  };
}

export interface LoopSummary {
  /** Successful requests completed in the window. */
  ops: number;
  ops_per_sec: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
  errors: number;
  /** errors / (ops + errors). */
  error_rate: number;
  /** Failures by kind (gRPC status name, else message), only when there were any. */
  error_kinds?: Record<string, number>;
  /** The first failure's full message, only when there were any. */
  first_error?: string;
}

/** Scenarios whose share of failed requests is above this are flagged in the report. */
export const ERROR_RATE_WARNING = 0.01;

const roundTo = (value: number, decimals: number): number => Number(value.toFixed(decimals));
const usToMs = (us: number): number => roundTo(us / 1000, 3);

export function summarize(result: ClosedLoopResult): LoopSummary {
  const histogram = result.latencyUs;
  const empty = result.ops === 0;
  const at = (percentile: number): number => (empty ? 0 : usToMs(histogram.getValueAtPercentile(percentile)));
  const attempts = result.ops + result.errors;
  const summary: LoopSummary = {
    ops: result.ops,
    ops_per_sec: roundTo(result.ops / (result.windowMs / 1000), 1),
    p50_ms: at(50),
    p90_ms: at(90),
    p99_ms: at(99),
    p999_ms: at(99.9),
    max_ms: empty ? 0 : usToMs(histogram.maxValue),
    errors: result.errors,
    error_rate: attempts === 0 ? 0 : roundTo(result.errors / attempts, 4),
  };
  if (result.errorKinds.size > 0) summary.error_kinds = Object.fromEntries(result.errorKinds);
  if (result.firstError !== undefined) summary.first_error = result.firstError;
  return summary;
}

/** "1234 ops/s  p50 0.81 ms  p99 2.3 ms  errors 0" for progress lines. */
export function formatSummary(summary: LoopSummary): string {
  const errors = summary.errors === 0 ? 'errors 0' : `errors ${summary.errors} (${(summary.error_rate * 100).toFixed(2)}%)`;
  return `${summary.ops_per_sec.toFixed(0)} ops/s  p50 ${summary.p50_ms} ms  p99 ${summary.p99_ms} ms  ${errors}`;
}

/** a / b with three significant digits, or undefined when either is missing or b is 0. */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || b === 0) return undefined;
  return Number((a / b).toPrecision(3));
}
