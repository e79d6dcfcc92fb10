import { credentials as grpcCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { ClusterClient, type GetRingResponse, type StatusResponse } from '@concord/proto/cluster';
import { ReadConsistency, type KeyValue } from '@concord/proto/common';
import { KVClient, type ScanResponse } from '@concord/proto/kv';
import { CHANNEL_OPTIONS, batchedStreamSource, callUnary } from './calls.js';
import { ShardRouter, type RoutedScanRequest } from './shard-router.js';

/** How long a call may take when the caller names no deadline. */
export const DEFAULT_DEADLINE_MS = 5000;

/**
 * 'direct': the client caches the ring and calls shard leaders itself (one hop, the default).
 * 'coordinator': every key-value call goes through the coordinator's KV service (two hops, but
 * only the coordinator's address needs to be reachable, e.g. from outside a Kubernetes cluster).
 */
export type Routing = 'direct' | 'coordinator';

/** 'linearizable' (the default) sees every acknowledged write; 'serializable' may be stale but is cheaper. */
export type Consistency = 'linearizable' | 'serializable';

export interface ConnectOptions {
  /** host:port of a coordinator (or the Kubernetes Service in front of them). */
  address: string;
  /** Default 'direct'. */
  routing?: Routing;
  /** Deadline of each call, retries included, unless the call gives its own. Default 5000 ms. */
  deadlineMs?: number;
  /** Default insecure (plain HTTP/2). */
  credentials?: ChannelCredentials;
}

export interface CallOptions {
  /** Overrides the client's deadlineMs for this call. */
  deadlineMs?: number;
}

export interface GetOptions extends CallOptions {
  consistency?: Consistency;
}

export interface WriteOptions extends CallOptions {
  /** Compare-and-set: write only if the key's version is this one (0: only if it does not exist). */
  expectedVersion?: number;
}

export interface ScanOptions extends CallOptions {
  /** Keys starting with this prefix; not combined with startKey/endKey. */
  prefix?: string;
  /** First key, inclusive. */
  startKey?: string;
  /** Last key, exclusive. */
  endKey?: string;
  /** At most this many keys; default 1000, at most 10000. */
  limit?: number;
  consistency?: Consistency;
}

export interface GetResult {
  found: boolean;
  /** Empty when not found. */
  value: Buffer;
  /** 0 when not found. */
  version: number;
}

export interface PutResult {
  version: number;
}

export interface DeleteResult {
  deleted: boolean;
  /** 0 when the key did not exist. */
  previousVersion: number;
}

function toReadConsistency(consistency: Consistency | undefined): ReadConsistency {
  switch (consistency) {
    case undefined:
    case 'linearizable':
      return ReadConsistency.READ_CONSISTENCY_LINEARIZABLE;
    case 'serializable':
      return ReadConsistency.READ_CONSISTENCY_SERIALIZABLE;
  }
}

function toBuffer(value: string | Uint8Array): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** The key-value calls, whichever way they are routed. */
interface KeyValuePath {
  get(key: string, consistency: ReadConsistency, deadline: Date): Promise<GetResult>;
  put(key: string, value: Buffer, expectedVersion: number | undefined, deadline: Date): Promise<PutResult>;
  delete(key: string, expectedVersion: number | undefined, deadline: Date): Promise<DeleteResult>;
  scan(request: RoutedScanRequest, deadline: Date): AsyncIterable<KeyValue>;
  close(): void;
}

function directPath(router: ShardRouter): KeyValuePath {
  return {
    get: (key, consistency, deadline) => router.get({ key, consistency }, { deadline }),
    put: (key, value, expectedVersion, deadline) => router.put({ key, value, expectedVersion }, { deadline }),
    delete: (key, expectedVersion, deadline) => router.delete({ key, expectedVersion }, { deadline }),
    scan: (request, deadline) => router.scan(request, { deadline }),
    close: () => router.close(),
  };
}

function coordinatorPath(kv: KVClient): KeyValuePath {
  return {
    get: (key, consistency, deadline) => callUnary(kv.get.bind(kv), { key, consistency }, deadline),
    put: (key, value, expectedVersion, deadline) => callUnary(kv.put.bind(kv), { key, value, expectedVersion }, deadline),
    delete: (key, expectedVersion, deadline) => callUnary(kv.delete.bind(kv), { key, expectedVersion }, deadline),
    scan: (request, deadline) => ({
      async *[Symbol.asyncIterator]() {
        const source = batchedStreamSource(kv.scan(request, { deadline }), (message: ScanResponse) => message.kvs);
        try {
          for (let item = await source.next(); item !== undefined; item = await source.next()) yield item;
        } finally {
          source.close();
        }
      },
    }),
    close: () => kv.close(),
  };
}

/**
 * A connection to a Concord cluster. Errors are ConcordError with the server's status code and
 * message unchanged (ABORTED for a failed compare-and-set, INVALID_ARGUMENT naming the field).
 *
 * Retries: calls that the cluster refused before doing anything (wrong shard group, not the
 * leader) are retried transparently. A put or delete that fails with UNAVAILABLE or
 * DEADLINE_EXCEEDED may or may not have been applied, and is not retried: retry it yourself if
 * repeating it is harmless, or use expectedVersion to make it so.
 */
export class ConcordClient {
  private constructor(
    private readonly cluster: ClusterClient,
    private readonly keyValue: KeyValuePath,
    private readonly deadlineMs: number,
  ) {}

  /**
   * Connects to the coordinator at `address`. With direct routing the ring is loaded here, so a
   * wrong address or an unreachable cluster fails now rather than on the first call.
   */
  static async connect(options: ConnectOptions): Promise<ConcordClient> {
    const credentials = options.credentials ?? grpcCredentials.createInsecure();
    const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    const cluster = new ClusterClient(options.address, credentials, CHANNEL_OPTIONS);
    if ((options.routing ?? 'direct') === 'coordinator') {
      const kv = new KVClient(options.address, credentials, CHANNEL_OPTIONS);
      return new ConcordClient(cluster, coordinatorPath(kv), deadlineMs);
    }
    const router = new ShardRouter({
      credentials,
      ringSource: () => callUnary(cluster.getRing.bind(cluster), {}, new Date(Date.now() + deadlineMs)),
    });
    try {
      await router.refresh();
    } catch (error) {
      router.close();
      cluster.close();
      throw error;
    }
    return new ConcordClient(cluster, directPath(router), deadlineMs);
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    const { found, value, version } = await this.keyValue.get(key, toReadConsistency(options.consistency), this.deadline(options));
    return { found, value, version };
  }

  async put(key: string, value: string | Uint8Array, options: WriteOptions = {}): Promise<PutResult> {
    const { version } = await this.keyValue.put(key, toBuffer(value), options.expectedVersion, this.deadline(options));
    return { version };
  }

  async delete(key: string, options: WriteOptions = {}): Promise<DeleteResult> {
    const { deleted, previousVersion } = await this.keyValue.delete(key, options.expectedVersion, this.deadline(options));
    return { deleted, previousVersion };
  }

  /**
   * The keys of a prefix or range in key order, streamed: iterate with `for await`; breaking out
   * early cancels the scan. The deadline covers the whole scan.
   */
  scan(options: ScanOptions = {}): AsyncIterable<KeyValue> {
    const request: RoutedScanRequest = {
      prefix: options.prefix ?? '',
      startKey: options.startKey ?? '',
      endKey: options.endKey ?? '',
      limit: options.limit ?? 0,
      consistency: toReadConsistency(options.consistency),
    };
    const keyValue = this.keyValue;
    const deadlineOf = () => this.deadline(options);
    // The deadline starts when iteration starts, not when scan() is called.
    return {
      [Symbol.asyncIterator]: () => keyValue.scan(request, deadlineOf())[Symbol.asyncIterator](),
    };
  }

  /** Members, leaders, terms, indexes and key counts of every group. */
  status(options: CallOptions = {}): Promise<StatusResponse> {
    return callUnary(this.cluster.status.bind(this.cluster), {}, this.deadline(options));
  }

  /** The coordinator's current routing table. */
  ring(options: CallOptions = {}): Promise<GetRingResponse> {
    return callUnary(this.cluster.getRing.bind(this.cluster), {}, this.deadline(options));
  }

  /** Closes every channel. */
  close(): void {
    this.keyValue.close();
    this.cluster.close();
  }

  private deadline(options: CallOptions): Date {
    return new Date(Date.now() + (options.deadlineMs ?? this.deadlineMs));
  }
}
