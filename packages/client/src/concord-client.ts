import { credentials as grpcCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import type {
  ChangeShardMembershipRequest,
  ChangeShardMembershipResponse,
  GetRingResponse,
  StatusResponse,
  TransferLeadershipRequest,
  TransferLeadershipResponse,
} from '@concord/proto/cluster';
import { ReadConsistency, type KeyValue } from '@concord/proto/common';
import type { ScanResponse } from '@concord/proto/kv';
import { batchedStreamSource, callUnary, type PullSource } from './calls.js';
import { CoordinatorSet } from './coordinators.js';
import { ShardRouter, type RoutedScanRequest } from './shard-router.js';
import { tlsCredentials, type TlsOptions } from './tls.js';

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
  /**
   * host:port of a coordinator (or the Kubernetes Service in front of them), or several: a list,
   * or one string separated by commas ("10.0.0.1:7070,10.0.0.2:7070"). Any coordinator serves any
   * call; a call that one could not take (unreachable, no meta leader yet) goes to the next.
   */
  address: string | readonly string[];
  /** Default 'direct'. */
  routing?: Routing;
  /** Deadline of each call, retries included, unless the call gives its own. Default 5000 ms. */
  deadlineMs?: number;
  /**
   * TLS to the coordinators and shard replicas: the CA their certificates are signed by and, for a
   * cluster started with --tls-* (which requires client certificates), this client's certificate
   * and key. PEM contents, not file names. Not combined with `credentials`.
   */
  tls?: TlsOptions;
  /** Any grpc-js channel credentials, for what `tls` does not cover. Default insecure (plain HTTP/2). */
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

function coordinatorPath(coordinators: CoordinatorSet): KeyValuePath {
  return {
    get: (key, consistency, deadline) =>
      coordinators.call('read', deadline, (address) => {
        const kv = coordinators.kv(address);
        return callUnary(kv.get.bind(kv), { key, consistency }, deadline);
      }),
    put: (key, value, expectedVersion, deadline) =>
      coordinators.call('write', deadline, (address) => {
        const kv = coordinators.kv(address);
        return callUnary(kv.put.bind(kv), { key, value, expectedVersion }, deadline);
      }),
    delete: (key, expectedVersion, deadline) =>
      coordinators.call('write', deadline, (address) => {
        const kv = coordinators.kv(address);
        return callUnary(kv.delete.bind(kv), { key, expectedVersion }, deadline);
      }),
    scan: (request, deadline) => ({
      async *[Symbol.asyncIterator]() {
        // Opening the stream is a read that may move to another coordinator, up to its first key;
        // after that a failure is surfaced, since starting over would repeat keys.
        const opened = await coordinators.call('read', deadline, async (address) => {
          const source: PullSource<KeyValue> = batchedStreamSource(coordinators.kv(address).scan(request, { deadline }), (message: ScanResponse) => message.kvs);
          try {
            return { source, first: await source.next() };
          } catch (error) {
            source.close();
            throw error;
          }
        });
        const { source } = opened;
        try {
          for (let item = opened.first; item !== undefined; item = await source.next()) yield item;
        } finally {
          source.close();
        }
      },
    }),
    close: () => undefined,
  };
}

/**
 * A connection to a Concord cluster. Errors are ConcordError with the server's status code and
 * message unchanged (ABORTED for a failed compare-and-set, INVALID_ARGUMENT naming the field).
 *
 * Retries: calls that the cluster refused before doing anything (wrong shard group, not the
 * leader) or that never reached a server (no connection could be established) are retried
 * transparently, on another replica or coordinator. A put or delete that fails otherwise with
 * UNAVAILABLE (a connection that broke mid-call) or DEADLINE_EXCEEDED may or may not have been
 * applied, and is not retried: retry it yourself if repeating it is harmless, or use
 * expectedVersion to make it so.
 */
export class ConcordClient {
  private constructor(
    private readonly coordinators: CoordinatorSet,
    private readonly keyValue: KeyValuePath,
    private readonly deadlineMs: number,
  ) {}

  /**
   * Connects to the coordinators at `address`. With direct routing the ring is loaded here, so a
   * wrong address or an unreachable cluster fails now rather than on the first call.
   */
  static async connect(options: ConnectOptions): Promise<ConcordClient> {
    if (options.tls !== undefined && options.credentials !== undefined) throw new TypeError('connect: give tls or credentials, not both');
    const credentials = options.tls !== undefined ? tlsCredentials(options.tls) : (options.credentials ?? grpcCredentials.createInsecure());
    const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    const coordinators = new CoordinatorSet({ addresses: typeof options.address === 'string' ? [options.address] : options.address, credentials });
    if ((options.routing ?? 'direct') === 'coordinator') {
      return new ConcordClient(coordinators, coordinatorPath(coordinators), deadlineMs);
    }
    const router = new ShardRouter({
      credentials,
      ringSource: () => {
        const deadline = new Date(Date.now() + deadlineMs);
        return coordinators.call('read', deadline, (address) => {
          const cluster = coordinators.cluster(address);
          return callUnary(cluster.getRing.bind(cluster), {}, deadline);
        });
      },
    });
    try {
      await router.refresh();
    } catch (error) {
      router.close();
      coordinators.close();
      throw error;
    }
    return new ConcordClient(coordinators, directPath(router), deadlineMs);
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
    const deadline = this.deadline(options);
    return this.coordinators.call('read', deadline, (address) => {
      const cluster = this.coordinators.cluster(address);
      return callUnary(cluster.status.bind(cluster), {}, deadline);
    });
  }

  /** The cluster's current routing table, as the meta group holds it. */
  ring(options: CallOptions = {}): Promise<GetRingResponse> {
    const deadline = this.deadline(options);
    return this.coordinators.call('read', deadline, (address) => {
      const cluster = this.coordinators.cluster(address);
      return callUnary(cluster.getRing.bind(cluster), {}, deadline);
    });
  }

  /**
   * One membership step of a shard group (add a learner, promote it, remove a member), applied by
   * the group's leader and recorded in the meta group; answers the group's members afterwards.
   * A write: not sent again after a connection dropped with the call in flight.
   */
  changeShardMembership(request: ChangeShardMembershipRequest, options: CallOptions = {}): Promise<ChangeShardMembershipResponse> {
    const deadline = this.deadline(options);
    return this.coordinators.call('write', deadline, (address) => {
      const cluster = this.coordinators.cluster(address);
      return callUnary(cluster.changeShardMembership.bind(cluster), request, deadline);
    });
  }

  /**
   * Hands the leadership of a shard group (or of the meta group, "meta") to one of its voters;
   * answers once that member leads. Safe to repeat: asking for the member that leads succeeds.
   */
  transferLeadership(request: TransferLeadershipRequest, options: CallOptions = {}): Promise<TransferLeadershipResponse> {
    const deadline = this.deadline(options);
    return this.coordinators.call('read', deadline, (address) => {
      const cluster = this.coordinators.cluster(address);
      return callUnary(cluster.transferLeadership.bind(cluster), request, deadline);
    });
  }

  /** The coordinator addresses this client uses, in the order it tries them. */
  get coordinatorAddresses(): readonly string[] {
    return this.coordinators.addresses;
  }

  /** Closes every channel. */
  close(): void {
    this.keyValue.close();
    this.coordinators.close();
  }

  private deadline(options: CallOptions): Date {
    return new Date(Date.now() + (options.deadlineMs ?? this.deadlineMs));
  }
}
