// Thin promise wrappers over the generated grpc-js clients, so tests talk to the servers through
// the raw contracts (what the server validates is what gets tested, not what an SDK pre-checks).
import * as grpc from '@grpc/grpc-js';
import { ClusterClient } from '@concord/proto/cluster';
import { KVClient } from '@concord/proto/kv';
import { ShardClient } from '@concord/proto/shard';
import { TxnClient } from '@concord/proto/txn';
import { CLIENT_CHANNEL_OPTIONS } from '@concord/runtime';

/**
 * What a client of a Concord server should use: the servers' message limits, and reconnection
 * attempts at most a second apart. With grpc-js's own backoff (growing to two minutes), a test's
 * channel to a server killed and restarted could still be waiting seconds after the server was back
 * (a flake of the coordinator failover test, whose clients share one subchannel per address).
 */
const CHANNEL_OPTIONS: grpc.ClientOptions = CLIENT_CHANNEL_OPTIONS;

export function kvClient(address: string): KVClient {
  return new KVClient(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

export function shardClient(address: string): ShardClient {
  return new ShardClient(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

export function clusterClient(address: string): ClusterClient {
  return new ClusterClient(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

export function txnClient(address: string): TxnClient {
  return new TxnClient(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/**
 * Calls a unary method (pass it bound: `client.put.bind(client)`) with a deadline; a failed call
 * rejects with the grpc-js ServiceError (code, details, trailing metadata).
 */
export function unary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, deadlineMs: number): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    method(request, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (error, response) => {
      if (error !== null) reject(error);
      else resolve(response);
    });
  });
}

/** Reads a server stream to its end; rejects with the stream's ServiceError. */
export async function collect<Msg>(stream: grpc.ClientReadableStream<Msg>): Promise<Msg[]> {
  const messages: Msg[] = [];
  for await (const message of stream as AsyncIterable<Msg>) messages.push(message);
  return messages;
}

export function isServiceError(error: unknown): error is grpc.ServiceError {
  return (
    error instanceof Error &&
    typeof (error as { code?: unknown }).code === 'number' &&
    typeof (error as { details?: unknown }).details === 'string'
  );
}

/** A trailing metadata value of a failed call (e.g. `concord-reason`). */
export function trailer(error: grpc.ServiceError, key: string): string | undefined {
  const value = error.metadata?.get(key)[0];
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.toString('utf8');
}

/** "INVALID_ARGUMENT: key: must not be empty", for assertion messages. */
export function describeError(error: unknown): string {
  if (isServiceError(error)) return `${grpc.status[error.code] ?? error.code}: ${error.details}`;
  return error instanceof Error ? error.message : String(error);
}

/**
 * Awaits a call that must fail and returns its ServiceError; fails the test if it succeeded or
 * failed with something that is not a gRPC status.
 */
export async function failure(call: Promise<unknown>, what: string): Promise<grpc.ServiceError> {
  let result: unknown;
  try {
    result = await call;
  } catch (error) {
    if (isServiceError(error)) return error;
    throw new Error(`${what}: expected a gRPC status, got ${describeError(error)}`, { cause: error });
  }
  throw new Error(`${what}: expected the call to fail, but it succeeded with ${JSON.stringify(result)}`);
}

/** Codes after which repeating the same read is safe and may succeed (a peer restarting). */
export function isTransient(error: unknown): boolean {
  return isServiceError(error) && (error.code === grpc.status.UNAVAILABLE || error.code === grpc.status.DEADLINE_EXCEEDED);
}

/**
 * Runs `operation` up to `attempts` times while it fails with a transient status, sleeping
 * `backoffMs` between tries. For reads and for checks after a restart, never to hide a bug:
 * any other failure is rethrown at once.
 */
export async function withRetry<T>(operation: () => Promise<T>, attempts: number, backoffMs: number): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (attempt >= attempts || !isTransient(error)) throw error;
      await sleep(backoffMs);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs `task` for every item with at most `concurrency` in flight; resolves when all are done.
 * A task that throws stops the pool and rejects with its error.
 */
export async function forEachConcurrently<T>(items: readonly T[], concurrency: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        await task(items[index]!, index);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}
