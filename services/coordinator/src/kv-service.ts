// concord.v1.KV: checks every request against the documented limits, then routes it to the shard
// group that owns the key through the same ShardRouter the SDK uses for direct routing.

import type { ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { ConcordError, METADATA_CURRENT_VERSION, type ShardRouter } from '@concord/client';
import type { KeyValue } from '@concord/proto/common';
import type { KVServer, ScanResponse } from '@concord/proto/kv';
import {
  ServiceError,
  serverStream,
  unary,
  validateConsistency,
  validateKey,
  validateScanLimit,
  validateScanRange,
  validateValue,
} from '@concord/runtime';

/** Keys per Scan message at most; a batch also ends once it holds SCAN_BATCH_MAX_BYTES. */
export const SCAN_BATCH_MAX_KVS = 256;
/** Bytes of keys and values per Scan message, roughly; one 1 MiB value still travels alone. */
export const SCAN_BATCH_MAX_BYTES = 1024 * 1024;

/**
 * Trailing metadata a KV client can use. The rest of what shards send (concord-reason,
 * concord-leader, concord-ring-epoch) describes shard routing, which the coordinator already
 * handled; passed on, it would name replicas a KV client never talks to.
 */
const RELAYED_METADATA = [METADATA_CURRENT_VERSION] as const;

export interface KvServiceOptions {
  router: ShardRouter;
  /** Deadline of the shard calls serving one client call when the client's deadline is later or absent. */
  shardTimeoutMs: number;
  /**
   * Runs after a request passed validation and before it is routed: the coordinator reloads the
   * router's table here when the replicated directory changed since the router last read it.
   */
  beforeRoute?: () => Promise<void>;
}

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

/**
 * The deadline for the shard calls that serve a client call: the client's own deadline when it is
 * sooner than now + shardTimeoutMs. Without it a client that gave up would leave the coordinator
 * waiting on a slow shard for the full timeout.
 */
export function shardDeadline(clientDeadline: Date | number, shardTimeoutMs: number, now = Date.now()): Date {
  const clientMs = clientDeadline instanceof Date ? clientDeadline.getTime() : clientDeadline;
  return new Date(Math.min(clientMs, now + shardTimeoutMs));
}

/**
 * Turns a routing failure into the status the KV client gets: same code, same message (a shard's
 * INVALID_ARGUMENT or a failed compare-and-set reads exactly as the shard phrased it), and only
 * the metadata that means something to a KV client. Anything else is a bug and stays one.
 */
export function toKvError(error: unknown): unknown {
  if (!(error instanceof ConcordError)) return error;
  const metadata: Record<string, string> = {};
  for (const key of RELAYED_METADATA) {
    const value = error.metadata.get(key)[0];
    if (value !== undefined) metadata[key] = typeof value === 'string' ? value : value.toString('utf8');
  }
  return new ServiceError(error.code, error.message, metadata);
}

async function relay<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    throw toKvError(error);
  }
}

/** Groups a key stream into Scan messages of at most SCAN_BATCH_MAX_KVS keys / about SCAN_BATCH_MAX_BYTES. */
export async function* scanBatches(kvs: AsyncIterable<KeyValue>): AsyncGenerator<ScanResponse, void, undefined> {
  let batch: KeyValue[] = [];
  let bytes = 0;
  for await (const kv of kvs) {
    batch.push(kv);
    bytes += Buffer.byteLength(kv.key, 'utf8') + kv.value.byteLength;
    if (batch.length >= SCAN_BATCH_MAX_KVS || bytes >= SCAN_BATCH_MAX_BYTES) {
      yield { kvs: batch };
      batch = [];
      bytes = 0;
    }
  }
  // Every message carries at least one key (kv.proto), so an empty scan sends none.
  if (batch.length > 0) yield { kvs: batch };
}

export function createKvService(options: KvServiceOptions): KVServer {
  const { router, shardTimeoutMs } = options;
  const beforeRoute = options.beforeRoute ?? (async () => undefined);
  const deadlineOf = (call: AnyCall): Date => shardDeadline(call.getDeadline(), shardTimeoutMs);
  return {
    get: unary(async (request, call) => {
      validateKey(request.key);
      const consistency = validateConsistency(request.consistency);
      await beforeRoute();
      const { found, value, version } = await relay(router.get({ key: request.key, consistency }, { deadline: deadlineOf(call) }));
      return { found, value, version };
    }),
    put: unary(async (request, call) => {
      validateKey(request.key);
      validateValue(request.value);
      const { key, value, expectedVersion } = request;
      await beforeRoute();
      const { version } = await relay(router.put({ key, value, expectedVersion }, { deadline: deadlineOf(call) }));
      return { version };
    }),
    delete: unary(async (request, call) => {
      validateKey(request.key);
      const { key, expectedVersion } = request;
      await beforeRoute();
      const { deleted, previousVersion } = await relay(router.delete({ key, expectedVersion }, { deadline: deadlineOf(call) }));
      return { deleted, previousVersion };
    }),
    scan: serverStream(async function* (request, call) {
      validateScanRange(request);
      const limit = validateScanLimit(request.limit);
      const consistency = validateConsistency(request.consistency);
      const { prefix, startKey, endKey } = request;
      await beforeRoute();
      const merged = router.scan({ prefix, startKey, endKey, limit, consistency }, { deadline: deadlineOf(call) });
      try {
        yield* scanBatches(merged);
      } catch (error) {
        throw toKvError(error);
      }
    }),
  };
}
