import { credentials as grpcCredentials, status, type ChannelCredentials } from '@grpc/grpc-js';
import type { KeyValue } from '@concord/proto/common';
import {
  ShardClient,
  type ShardDeleteRequest,
  type ShardDeleteResponse,
  type ShardGetRequest,
  type ShardGetResponse,
  type ShardPutRequest,
  type ShardPutResponse,
  type ShardScanRequest,
  type ShardScanResponse,
} from '@concord/proto/shard';
import { ReadConsistency } from '@concord/proto/common';
import { CHANNEL_OPTIONS, batchedStreamSource, callUnary, type PullSource } from './calls.js';
import { ConcordError, REASON_NOT_LEADER, REASON_PROPOSAL_DROPPED, REASON_WRONG_SHARD, failedBeforeSending, toConcordError } from './errors.js';
import { mergeByKey } from './merge.js';
import { RoutingTable, type GroupRoute, type RingSource } from './routing-table.js';

/** Scan limit when the request says 0, as documented in proto/concord/v1/kv.proto. */
export const DEFAULT_SCAN_LIMIT = 1000;
/** Attempts per call, counting the first, before the router gives up with the last status. */
export const DEFAULT_MAX_ATTEMPTS = 5;
/**
 * Attempts per call while a group is changing leaders — answers that prove nothing was applied
 * (NOT_LEADER, a dropped proposal, a refused connection) — as long as the call's deadline allows.
 * An election takes about one election timeout (0.5–1 s by default), longer than
 * DEFAULT_MAX_ATTEMPTS pauses add up to, and giving up during it would fail writes that a moment
 * later would have succeeded.
 */
export const DEFAULT_MAX_ATTEMPTS_DURING_ELECTION = 20;
/** Pause before the second attempt; doubles per attempt up to DEFAULT_MAX_BACKOFF_MS. */
export const DEFAULT_BACKOFF_MS = 20;
export const DEFAULT_MAX_BACKOFF_MS = 250;
/**
 * How long a replica that refused a connection is passed over, and NOT_LEADER hints naming it
 * ignored: about one election timeout (0.5–1 s by default), by when the surviving replicas stop
 * naming a dead leader and name the new one.
 */
export const DEFAULT_UNREACHABLE_MS = 1000;

export interface ShardRouterOptions {
  /** Where the routing table comes from (Cluster.GetRing, or the coordinator's own directory). */
  ringSource: RingSource;
  /** Channel credentials for shard replicas; default insecure (plain HTTP/2). */
  credentials?: ChannelCredentials;
  /** Attempts per call, counting the first; default DEFAULT_MAX_ATTEMPTS. */
  maxAttempts?: number;
  /** Attempts per call while a group changes leaders, deadline permitting; default DEFAULT_MAX_ATTEMPTS_DURING_ELECTION. */
  maxAttemptsDuringElection?: number;
  /** First retry pause; default DEFAULT_BACKOFF_MS. */
  backoffMs?: number;
  /** Longest retry pause; default DEFAULT_MAX_BACKOFF_MS. */
  maxBackoffMs?: number;
  /** How long a replica that refused a connection is passed over; default DEFAULT_UNREACHABLE_MS. */
  unreachableMs?: number;
}

export interface RouteCallOptions {
  /** Absolute deadline for the whole operation, retries included. None: the call may wait forever. */
  deadline?: Date;
}

export type RoutedGetRequest = Omit<ShardGetRequest, 'ringEpoch'>;
export type RoutedPutRequest = Omit<ShardPutRequest, 'ringEpoch'>;
export type RoutedDeleteRequest = Omit<ShardDeleteRequest, 'ringEpoch'>;
export type RoutedScanRequest = Omit<ShardScanRequest, 'ringEpoch'>;

/** What the router does after a failed attempt. */
export type Recovery = 'refresh-ring' | 'follow-leader' | 'next-replica' | 'give-up';

/**
 * Decides how to recover from a failed shard call (`error` as grpc-js reported it). Writes are
 * retried only where the write certainly was not applied: the shard refused it before proposing it
 * (WRONG_SHARD, NOT_LEADER); its group dropped the proposal (PROPOSAL_DROPPED: another leader's
 * entry took its index, so it can never commit, or the leader never appended it: a leadership
 * transfer, or too many bytes uncommitted); or no connection to the replica could be
 * established, so the request was never sent (see `failedBeforeSending`; typically a dead leader
 * that a NOT_LEADER hint or the cached route still names). After any other UNAVAILABLE — a
 * connection that broke with the call in flight ("Connection dropped", ECONNRESET), an outcome the
 * group could not tell (OUTCOME_UNKNOWN) — or DEADLINE_EXCEEDED the write may have been applied,
 * and retrying it could apply it twice (a put's version moves twice; a CAS would then fail against
 * its own write). The caller decides whether such a write is safe to repeat. A failed
 * compare-and-set (ABORTED) is an answer, not a fault, and is never retried.
 */
export function recoveryFor(error: ConcordError, operation: 'read' | 'write'): Recovery {
  if (error.code === status.FAILED_PRECONDITION && error.reason === REASON_WRONG_SHARD) return 'refresh-ring';
  if (error.code === status.UNAVAILABLE && error.reason === REASON_NOT_LEADER) {
    return error.leaderHint !== undefined ? 'follow-leader' : 'next-replica';
  }
  if (error.code === status.UNAVAILABLE && error.reason === REASON_PROPOSAL_DROPPED) return 'next-replica';
  if (failedBeforeSending(error)) return 'next-replica';
  if (error.code === status.UNAVAILABLE && operation === 'read') return 'next-replica';
  return 'give-up';
}

/**
 * A failed attempt and the replica it went to, so the router knows which route to fix. `error` is
 * the status as received (what recovery decides on); `reported` names the group and replica.
 */
class AttemptFailure extends Error {
  readonly reported: ConcordError;

  constructor(
    readonly route: GroupRoute,
    readonly address: string,
    readonly error: ConcordError,
  ) {
    super(error.message);
    this.reported = describeFailure(route, address, error);
  }
}

interface UnaryAttempt<Res> {
  key: string;
  operation: 'read' | 'write';
  /** Whether success proves the replica is the leader (writes and linearizable reads). */
  leaderOnly: boolean;
  invoke: (client: ShardClient, ringEpoch: number) => Promise<Res>;
}

/**
 * Routes key-value calls straight to the shard group that owns each key, as a Redis Cluster or
 * TiKV client does: it caches the ring, the members of every group and their leaders, and one
 * channel per replica, and repairs its cache from the shards' answers (WRONG_SHARD: reload the
 * ring; NOT_LEADER: go to the named leader; unreachable: try the next replica). Every call makes
 * at most `maxAttempts` attempts, then fails with the last status.
 */
export class ShardRouter {
  private readonly ringSource: RingSource;
  private readonly credentials: ChannelCredentials;
  private readonly maxAttempts: number;
  private readonly maxAttemptsDuringElection: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly unreachableMs: number;
  private readonly channels = new Map<string, ShardClient>();
  private table: RoutingTable | undefined;
  private refreshing: Promise<RoutingTable> | undefined;
  private closed = false;

  constructor(options: ShardRouterOptions) {
    this.ringSource = options.ringSource;
    this.credentials = options.credentials ?? grpcCredentials.createInsecure();
    this.maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
    this.maxAttemptsDuringElection = Math.max(this.maxAttempts, options.maxAttemptsDuringElection ?? DEFAULT_MAX_ATTEMPTS_DURING_ELECTION);
    this.backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
    this.maxBackoffMs = options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
    this.unreachableMs = options.unreachableMs ?? DEFAULT_UNREACHABLE_MS;
  }

  /** The routing table in use, loading it on first use. */
  async routingTable(): Promise<RoutingTable> {
    return this.table ?? this.refresh();
  }

  /**
   * Reloads the routing table from the ring source. Single-flight: callers arriving while a reload
   * runs share it, so a burst of WRONG_SHARD answers costs one GetRing.
   */
  refresh(): Promise<RoutingTable> {
    this.refreshing ??= this.load().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** host:port of a group's leader as this router last learned it, if any. */
  knownLeader(groupId: string): string | undefined {
    return this.table?.groups.get(groupId)?.knownLeader();
  }

  async get(request: RoutedGetRequest, options: RouteCallOptions = {}): Promise<ShardGetResponse> {
    return this.routeUnary(
      {
        key: request.key,
        operation: 'read',
        leaderOnly: request.consistency !== ReadConsistency.READ_CONSISTENCY_SERIALIZABLE,
        invoke: (client, ringEpoch) => callUnary(client.get.bind(client), { ...request, ringEpoch }, options.deadline),
      },
      options.deadline,
    );
  }

  /** Not retried after a failure that may have applied it (a dropped connection, DEADLINE_EXCEEDED): see `recoveryFor`. */
  async put(request: RoutedPutRequest, options: RouteCallOptions = {}): Promise<ShardPutResponse> {
    return this.routeUnary(
      {
        key: request.key,
        operation: 'write',
        leaderOnly: true,
        invoke: (client, ringEpoch) => callUnary(client.put.bind(client), { ...request, ringEpoch }, options.deadline),
      },
      options.deadline,
    );
  }

  /** Not retried after a failure that may have applied it (a dropped connection, DEADLINE_EXCEEDED): see `recoveryFor`. */
  async delete(request: RoutedDeleteRequest, options: RouteCallOptions = {}): Promise<ShardDeleteResponse> {
    return this.routeUnary(
      {
        key: request.key,
        operation: 'write',
        leaderOnly: true,
        invoke: (client, ringEpoch) => callUnary(client.delete.bind(client), { ...request, ringEpoch }, options.deadline),
      },
      options.deadline,
    );
  }

  /**
   * Streams the keys of a prefix or range from every group, merged into key order, at most `limit`
   * keys (0: DEFAULT_SCAN_LIMIT). Each group is asked for the full limit, since any one group may
   * hold all of the first keys. Only one key per group is held at a time; stopping early cancels
   * every group's stream. A failure before the first key is recovered like a read and the whole
   * scan restarts (a new ring may name other groups); a failure after keys were yielded is
   * surfaced, since restarting would repeat them.
   */
  async *scan(request: RoutedScanRequest, options: RouteCallOptions = {}): AsyncGenerator<KeyValue, void, undefined> {
    const limit = request.limit === 0 ? DEFAULT_SCAN_LIMIT : request.limit;
    for (let attempt = 1; ; attempt++) {
      const table = await this.routingTable();
      const sources = [...table.groups.values()].map((route) => this.openGroupScan(route, table.epoch, { ...request, limit }, options.deadline));
      let yielded = 0;
      try {
        for await (const kv of mergeByKey(sources, limit)) {
          yield kv;
          yielded++;
        }
        return;
      } catch (error) {
        if (!(error instanceof AttemptFailure)) throw error;
        if (yielded > 0) throw error.reported.withAttempts(attempt);
        await this.recover(error, 'read', table, attempt, options.deadline);
      }
    }
  }

  /** Closes every channel; calls after this fail with FAILED_PRECONDITION. */
  close(): void {
    this.closed = true;
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }

  private async load(): Promise<RoutingTable> {
    this.assertOpen();
    const response = await this.ringSource().catch((error: unknown) => {
      throw toConcordError(error);
    });
    this.table = RoutingTable.from(response, this.table);
    return this.table;
  }

  private async routeUnary<Res>(attempt: UnaryAttempt<Res>, deadline: Date | undefined): Promise<Res> {
    for (let count = 1; ; count++) {
      const table = await this.routingTable();
      const route = table.routeOf(attempt.key);
      const address = route.preferred();
      try {
        const response = await attempt.invoke(this.channel(address), table.epoch);
        if (attempt.leaderOnly) route.confirmLeader(address);
        return response;
      } catch (error) {
        const failure = new AttemptFailure(route, address, toConcordError(error));
        await this.recover(failure, attempt.operation, table, count, deadline);
      }
    }
  }

  /**
   * Applies the recovery for a failed attempt and waits before the next one, or throws the
   * failure's status when the call must not (or can no longer) be retried.
   */
  private async recover(failure: AttemptFailure, operation: 'read' | 'write', table: RoutingTable, attempt: number, deadline: Date | undefined): Promise<void> {
    const { route, address, error, reported } = failure;
    const now = Date.now();
    if (failedBeforeSending(error)) route.markUnreachable(address, now + this.unreachableMs);
    let recovery = recoveryFor(error, operation);
    // A follower still naming a leader that just refused a connection has not noticed it died:
    // going there again would spend an attempt on a refused connection. Ask another replica,
    // after the usual pause, until one names a live leader.
    if (recovery === 'follow-leader' && route.isUnreachable(error.leaderHint as string, now)) recovery = 'next-replica';
    if (recovery === 'give-up') {
      // A write that failed with UNAVAILABLE is not retried, but the caller's own retry should not
      // go back to the same replica.
      if (error.code === status.UNAVAILABLE) route.skip(address, now);
      throw reported.withAttempts(attempt);
    }
    // Only with a deadline: it, not the attempt count, then bounds how long the call waits.
    const leaderChanging =
      deadline !== undefined &&
      (error.reason === REASON_NOT_LEADER || error.reason === REASON_PROPOSAL_DROPPED || failedBeforeSending(error));
    if (attempt >= (leaderChanging ? this.maxAttemptsDuringElection : this.maxAttempts)) {
      if (recovery !== 'refresh-ring') route.skip(address, now);
      throw reported.withAttempts(attempt);
    }
    let pauseMs = this.backoffFor(attempt);
    switch (recovery) {
      case 'refresh-ring':
        // Only reload if nobody has since: a burst of WRONG_SHARD answers under one table shares
        // one reload rather than queueing several.
        if (this.table === table) await this.refresh();
        break;
      case 'follow-leader':
        route.followHint(error.leaderHint as string);
        // A fresh hint is usually right; going there at once saves a pause per leader change.
        pauseMs = 0;
        break;
      case 'next-replica':
        route.skip(address, now);
        break;
    }
    if (deadline !== undefined && Date.now() + pauseMs >= deadline.getTime()) throw reported.withAttempts(attempt);
    if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }

  /** Exponential backoff with jitter, so clients that failed together do not retry together. */
  private backoffFor(attempt: number): number {
    const ceiling = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempt - 1));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  private openGroupScan(route: GroupRoute, ringEpoch: number, request: RoutedScanRequest, deadline: Date | undefined): PullSource<KeyValue> {
    const address = route.preferred();
    const client = this.channel(address);
    const call = client.scan({ ...request, ringEpoch }, deadline === undefined ? {} : { deadline });
    const source = batchedStreamSource(call, (message: ShardScanResponse) => message.kvs);
    return {
      next: () =>
        source.next().catch((error: unknown) => {
          throw new AttemptFailure(route, address, toConcordError(error));
        }),
      close: () => source.close(),
    };
  }

  private channel(address: string): ShardClient {
    this.assertOpen();
    let channel = this.channels.get(address);
    if (channel === undefined) {
      // Channels are kept for the router's lifetime: the addresses are the cluster's replicas,
      // a small set that changes rarely, and reconnecting per call would cost a handshake each.
      channel = new ShardClient(address, this.credentials, CHANNEL_OPTIONS);
      this.channels.set(address, channel);
    }
    return channel;
  }

  private assertOpen(): void {
    if (this.closed) throw new ConcordError(status.FAILED_PRECONDITION, 'the client is closed');
  }
}

/**
 * A transport failure (no Concord reason attached) says only what grpc-js saw; name the group and
 * replica so the caller can tell which part of the cluster is down.
 */
function describeFailure(route: GroupRoute, address: string, error: ConcordError): ConcordError {
  if (error.reason !== undefined || (error.code !== status.UNAVAILABLE && error.code !== status.DEADLINE_EXCEEDED)) return error;
  const what = error.code === status.UNAVAILABLE ? 'is unavailable' : 'did not answer in time';
  return new ConcordError(error.code, `shard group ${route.groupId} (replica ${address}) ${what}: ${error.details}`, {
    metadata: error.metadata,
    attempts: error.attempts,
    cause: error,
  });
}
