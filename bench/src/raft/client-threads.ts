// The load on more than one thread (`npm run bench -- raft --client-threads N`): a scenario's
// requests in flight are shared between the main thread and N−1 worker threads, each with a client
// and a connection of its own to the leader and its own V8 heap, so that one thread's garbage
// collection pauses only its share of the requests rather than all of them. Every thread runs the
// same closed loop (closed-loop.ts) over the same window; their counts and latency histograms are
// added up. Both systems get the same threads, so the comparison stays like for like.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { decodeFromCompressedBase64, encodeIntoCompressedBase64 } from 'hdr-histogram-js';
import { runClosedLoop, type ClosedLoopOptions, type ClosedLoopResult } from '../closed-loop.js';
import { benchKey, connectTarget, VALUE_BYTES, type ClientKind, type Op, type System, type Target } from './targets.js';

/** What one worker thread runs: its share of one scenario. */
export interface ThreadTask {
  system: System;
  /** The members' client endpoints by name (connectTarget). */
  endpoints: [string, string][];
  deadlineMs: number;
  client: ClientKind;
  op: Op;
  concurrency: number;
  /** Puts write keys of this prefix, never written by another thread or scenario. */
  keyPrefix: string;
  readKeys: number;
  value: Uint8Array;
  warmupMs: number;
  durationMs: number;
}

type FromThread =
  | { kind: 'ready' }
  | { kind: 'done'; ops: number; errors: number; windowMs: number; latency: string; errorKinds: [string, number][]; firstError: string | undefined }
  | { kind: 'failed'; message: string };

type ToThread = { kind: 'go'; startAt: number };

const TASK_MARK = 'concord-raft-bench-client-thread';

/** Milliseconds since the epoch, comparable between threads (each has its own performance.now()). */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** The closed loop's operation: puts of new keys under `keyPrefix`, or linearizable gets of the keys written before. */
export function operationFor(target: Target, op: Op, keyPrefix: string, readKeys: number, value: Buffer): ClosedLoopOptions['operation'] {
  let next = 0;
  if (op === 'put') return () => target.put(benchKey(keyPrefix, next++), value);
  return async () => {
    const key = benchKey('r', next++ % readKeys);
    const found = await target.get(key);
    if (found?.length !== VALUE_BYTES) throw new Error(`get ${key}: a key written before the run is missing`);
  };
}

/** Shares `concurrency` out between `threads` as evenly as it goes (the first shares take the remainder). */
export function shareOut(concurrency: number, threads: number): number[] {
  const used = Math.min(threads, concurrency);
  return Array.from({ length: used }, (_, i) => Math.floor(concurrency / used) + (i < concurrency % used ? 1 : 0));
}

/** Worker threads connected and waiting for the start; `go` starts their loops and resolves with their results. */
export interface ClientThreads {
  go(startAt: number): Promise<ClosedLoopResult[]>;
  terminate(): Promise<void>;
}

export async function startClientThreads(tasks: readonly ThreadTask[]): Promise<ClientThreads> {
  const workers = tasks.map((task) => new Worker(new URL(import.meta.url), { workerData: { mark: TASK_MARK, task } }));
  const next = (worker: Worker): Promise<FromThread> =>
    new Promise((resolve, reject) => {
      const onMessage = (message: FromThread): void => {
        cleanup();
        if (message.kind === 'failed') reject(new Error(`client thread: ${message.message}`));
        else resolve(message);
      };
      const onError = (error: Error): void => {
        cleanup();
        reject(error);
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new Error(`client thread exited with code ${code} before it answered`));
      };
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    });
  const terminate = async (): Promise<void> => {
    await Promise.all(workers.map((worker) => worker.terminate()));
  };
  try {
    await Promise.all(workers.map(next));
  } catch (error) {
    await terminate();
    throw error;
  }
  return {
    go: async (startAt) => {
      const done = workers.map(next);
      for (const worker of workers) worker.postMessage({ kind: 'go', startAt } satisfies ToThread);
      const results = await Promise.all(done);
      return results.map((message) => {
        if (message.kind !== 'done') throw new Error(`client thread answered ${message.kind} instead of its results`);
        return {
          ops: message.ops,
          errors: message.errors,
          windowMs: message.windowMs,
          latencyUs: decodeFromCompressedBase64(message.latency),
          errorKinds: new Map(message.errorKinds),
          firstError: message.firstError,
        };
      });
    },
    terminate,
  };
}

/** One result from the loops of all threads: counts and histograms added up. */
export function mergeLoops(first: ClosedLoopResult, others: readonly ClosedLoopResult[]): ClosedLoopResult {
  const merged = { ...first, errorKinds: new Map(first.errorKinds) };
  for (const other of others) {
    merged.ops += other.ops;
    merged.errors += other.errors;
    merged.latencyUs.add(other.latencyUs);
    for (const [kind, count] of other.errorKinds) merged.errorKinds.set(kind, (merged.errorKinds.get(kind) ?? 0) + count);
    merged.firstError ??= other.firstError;
  }
  return merged;
}

async function threadMain(task: ThreadTask): Promise<void> {
  const port = parentPort!;
  const target = await connectTarget(task.system, new Map(task.endpoints), task.deadlineMs, task.client);
  try {
    const start = new Promise<number>((resolve) => port.once('message', (message: ToThread) => resolve(message.startAt)));
    port.postMessage({ kind: 'ready' } satisfies FromThread);
    const startAt = await start;
    const loop = await runClosedLoop({
      concurrency: task.concurrency,
      warmupMs: Math.max(0, startAt - epochNow()) + task.warmupMs,
      durationMs: task.durationMs,
      operation: operationFor(target, task.op, task.keyPrefix, task.readKeys, Buffer.from(task.value)),
    });
    port.postMessage({
      kind: 'done',
      ops: loop.ops,
      errors: loop.errors,
      windowMs: loop.windowMs,
      latency: encodeIntoCompressedBase64(loop.latencyUs),
      errorKinds: [...loop.errorKinds],
      firstError: loop.firstError,
    } satisfies FromThread);
  } finally {
    target.close();
  }
}

if (!isMainThread && (workerData as { mark?: unknown } | null)?.mark === TASK_MARK) {
  threadMain((workerData as { task: ThreadTask }).task).catch((error: unknown) => {
    parentPort!.postMessage({ kind: 'failed', message: error instanceof Error ? error.message : String(error) } satisfies FromThread);
  });
}
