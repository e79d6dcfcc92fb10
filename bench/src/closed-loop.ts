// A closed-loop load generator: `concurrency` workers, each sending its next request as soon as
// the previous one answered. Throughput is what the system sustains at that many requests in
// flight; latency is what each request saw. Requests are never queued on the client side, so the
// figures are not inflated by a backlog (nor do they show one: see docs/performance.md).
import { performance } from 'node:perf_hooks';
import { status } from '@grpc/grpc-js';
import { build, type Histogram } from 'hdr-histogram-js';

export interface ClosedLoopOptions {
  /** Workers, i.e. requests in flight. */
  concurrency: number;
  /** Load before measuring starts: connections, JIT and caches settle; nothing is recorded. */
  warmupMs: number;
  /** The measured window. */
  durationMs: number;
  /**
   * One request. `sequence` counts this worker's requests from 0. Resolves when the request
   * succeeded; a rejection counts as an error.
   */
  operation(worker: number, sequence: number): Promise<unknown>;
  /** Called once when the measured window opens, e.g. to sample CPU time. */
  onWindowStart?(): void;
  /** Called once when the measured window closes, before in-flight requests are awaited. */
  onWindowEnd?(): void;
}

export interface ClosedLoopResult {
  /** Requests that succeeded and completed inside the measured window. */
  ops: number;
  /** Requests that failed and completed inside the measured window. */
  errors: number;
  /** Length of the measured window in milliseconds. */
  windowMs: number;
  /** Latency of the successful requests of the window, in microseconds. */
  latencyUs: Histogram;
  /** Failures of the window by kind (gRPC status name, else the error's message), with counts. */
  errorKinds: Map<string, number>;
  /** The full message of the first failure of the window, if any. */
  firstError: string | undefined;
}

/** Longest latency the histogram tracks without resizing: one minute, in microseconds. */
const HIGHEST_TRACKABLE_US = 60_000_000;
/** Distinct failure kinds kept per run; later new ones are counted under "other". */
const MAX_ERROR_KINDS = 8;

/**
 * Runs the loop for warm-up plus duration. A request counts in the window when it completes
 * inside it, whenever it was sent; requests still in flight when the window closes are awaited
 * (each has a deadline) but not counted, and no new ones are sent.
 */
export async function runClosedLoop(options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const latencyUs = build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_TRACKABLE_US,
    numberOfSignificantValueDigits: 3,
  });
  const errorKinds = new Map<string, number>();
  let firstError: string | undefined;
  let ops = 0;
  let errors = 0;
  const windowStart = performance.now() + options.warmupMs;
  const windowEnd = windowStart + options.durationMs;

  // Each hook runs once: from its timer, or from the first request that notices the window
  // opened or closed, whichever comes first (a busy event loop can delay timers).
  let windowOpened = false;
  let windowClosed = false;
  const openWindow = (): void => {
    if (windowOpened) return;
    windowOpened = true;
    options.onWindowStart?.();
  };
  const closeWindow = (): void => {
    if (windowClosed) return;
    openWindow();
    windowClosed = true;
    options.onWindowEnd?.();
  };

  const worker = async (index: number): Promise<void> => {
    for (let sequence = 0; ; sequence++) {
      const sentAt = performance.now();
      if (sentAt >= windowEnd) {
        closeWindow();
        return;
      }
      if (sentAt >= windowStart) openWindow();
      let failure: unknown;
      let failed = false;
      try {
        await options.operation(index, sequence);
      } catch (error) {
        failed = true;
        failure = error;
      }
      const doneAt = performance.now();
      if (doneAt < windowStart || doneAt >= windowEnd) continue;
      if (failed) {
        errors += 1;
        const { kind: described, message } = describeFailure(failure);
        firstError ??= message;
        const kind = errorKinds.has(described) || errorKinds.size < MAX_ERROR_KINDS ? described : 'other';
        errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
      } else {
        ops += 1;
        latencyUs.recordValue(Math.max(1, Math.round((doneAt - sentAt) * 1000)));
      }
    }
  };
  // Hooks may run a little late under load; callers measure the interval they actually saw.
  const startTimer = setTimeout(openWindow, Math.max(0, windowStart - performance.now()));
  const endTimer = setTimeout(closeWindow, Math.max(0, windowEnd - performance.now()));
  try {
    await Promise.all(Array.from({ length: options.concurrency }, (_, index) => worker(index)));
  } finally {
    clearTimeout(startTimer);
    clearTimeout(endTimer);
  }
  closeWindow();
  return { ops, errors, windowMs: options.durationMs, latencyUs, errorKinds, firstError };
}

/** The kind of a failure (its gRPC status name, else its message) and its full message. */
function describeFailure(error: unknown): { kind: string; message: string } {
  if (!(error instanceof Error)) return { kind: String(error), message: String(error) };
  // grpc-js errors and ConcordError both carry the numeric status and the server's details.
  const { code, details } = error as Error & { code?: unknown; details?: unknown };
  if (typeof code !== 'number') return { kind: error.message, message: error.message };
  const name = status[code] ?? `code ${code}`;
  return { kind: name, message: `${name}: ${typeof details === 'string' ? details : error.message}` };
}
