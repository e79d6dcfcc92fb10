// A load of distinct keys written through KV.Put by a pool of concurrent writers, recording which
// writes were acknowledged. A failed write is retried a bounded number of times after a backoff,
// from a queue, so the writers keep going with other keys meanwhile: the load keeps flowing to the
// healthy groups while one group is down, and the down group's keys get retried once it is back.
import { performance } from 'node:perf_hooks';
import type { KVClient } from '@concord/proto/kv';
import { describeError, sleep, unary } from './grpc.js';

export interface WriteOutcome {
  key: string;
  value: Buffer;
  /** Whether some attempt returned OK: the store promised to keep this write. */
  acked: boolean;
  /** The version the acknowledging Put returned. */
  ackedVersion: number | undefined;
  /** Attempts made (0: never attempted, the load ran out of time). */
  attempts: number;
  /** Attempts that failed (before an acknowledgement, or all of them). */
  failures: number;
  /** performance.now() of the acknowledgement. */
  ackedAt: number | undefined;
  /** performance.now() when the acknowledged attempt was sent. */
  ackedAttemptStartedAt: number | undefined;
  /** The last failure, for reports. */
  lastError: string | undefined;
}

export interface WriteLoad {
  kv: KVClient;
  count: number;
  keyOf(index: number): string;
  valueOf(index: number): Buffer;
  /** Writes in flight at once. */
  concurrency: number;
  /** Deadline of each Put. */
  deadlineMs: number;
  /** Waits before the 2nd, 3rd… attempt of a key; attempts per key = length + 1. */
  retryBackoffMs: readonly number[];
  /** The whole load stops after this long, attempted or not (a bound, not an expectation). */
  timeBoundMs: number;
  /** Called after each acknowledgement with the number acknowledged so far. */
  onAck?(ackedCount: number): void;
}

export interface WriteReport {
  outcomes: WriteOutcome[];
  ackedCount: number;
  /** Attempts that failed, including ones retried successfully later. */
  failedAttempts: number;
  /** True when timeBoundMs stopped the load before every key was settled. */
  timedOut: boolean;
  /** Failed attempts by status ("UNAVAILABLE: …"), for reports. */
  errors: Map<string, number>;
}

interface PendingRetry {
  index: number;
  notBefore: number;
}

export async function writeKeys(load: WriteLoad): Promise<WriteReport> {
  const outcomes: WriteOutcome[] = Array.from({ length: load.count }, (_, index) => ({
    key: load.keyOf(index),
    value: load.valueOf(index),
    acked: false,
    ackedVersion: undefined,
    attempts: 0,
    failures: 0,
    ackedAt: undefined,
    ackedAttemptStartedAt: undefined,
    lastError: undefined,
  }));
  const retries: PendingRetry[] = [];
  const maxAttempts = load.retryBackoffMs.length + 1;
  const startedAt = performance.now();
  let nextFresh = 0;
  let ackedCount = 0;
  let failedAttempts = 0;
  let timedOut = false;
  const errors = new Map<string, number>();

  const attempt = async (index: number): Promise<void> => {
    const outcome = outcomes[index]!;
    outcome.attempts += 1;
    const sentAt = performance.now();
    try {
      const response = await unary(load.kv.put.bind(load.kv), { key: outcome.key, value: outcome.value }, load.deadlineMs);
      outcome.acked = true;
      outcome.ackedVersion = response.version;
      outcome.ackedAt = performance.now();
      outcome.ackedAttemptStartedAt = sentAt;
      ackedCount += 1;
      load.onAck?.(ackedCount);
    } catch (error) {
      failedAttempts += 1;
      outcome.failures += 1;
      outcome.lastError = describeError(error);
      errors.set(outcome.lastError, (errors.get(outcome.lastError) ?? 0) + 1);
      const backoff = load.retryBackoffMs[outcome.attempts - 1];
      if (outcome.attempts < maxAttempts && backoff !== undefined) {
        retries.push({ index, notBefore: performance.now() + backoff });
      }
    }
  };

  const writer = async (): Promise<void> => {
    for (;;) {
      const now = performance.now();
      if (now - startedAt > load.timeBoundMs) {
        timedOut = true;
        return;
      }
      const due = retries.findIndex((retry) => retry.notBefore <= now);
      if (due !== -1) {
        await attempt(retries.splice(due, 1)[0]!.index);
      } else if (nextFresh < load.count) {
        await attempt(nextFresh++);
      } else if (retries.length > 0) {
        const soonest = Math.min(...retries.map((retry) => retry.notBefore));
        await sleep(Math.max(5, Math.min(250, soonest - now)));
      } else {
        // Nothing left to start; a writer still busy requeues its own key if that attempt fails.
        return;
      }
    }
  };

  await Promise.all(Array.from({ length: load.concurrency }, writer));
  return { outcomes, ackedCount, failedAttempts, timedOut, errors };
}
