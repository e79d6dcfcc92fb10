import { Metadata, status } from '@grpc/grpc-js';

/** Trailing metadata keys of the shard error convention (see proto/concord/v1/shard.proto). */
export const METADATA_REASON = 'concord-reason';
export const METADATA_RING_EPOCH = 'concord-ring-epoch';
export const METADATA_LEADER = 'concord-leader';
export const METADATA_CURRENT_VERSION = 'concord-current-version';

/** Values of `concord-reason`. */
export const REASON_WRONG_SHARD = 'WRONG_SHARD';
export const REASON_NOT_LEADER = 'NOT_LEADER';
/** The replica's consensus group dropped the proposal (another leader's entry took its index): nothing was written. */
export const REASON_PROPOSAL_DROPPED = 'PROPOSAL_DROPPED';

export interface ConcordErrorOptions {
  /** The trailing metadata of the failed call. */
  metadata?: Metadata;
  /** How many attempts the router made before giving up (1 when the error was not retried). */
  attempts?: number;
  cause?: unknown;
}

/**
 * A failed Concord call: the gRPC status code and the server's details, unchanged, so an
 * INVALID_ARGUMENT or ABORTED message reaches the user exactly as the server phrased it.
 */
export class ConcordError extends Error {
  /** The gRPC status code. */
  readonly code: status;
  /** The server's message, exactly as received. */
  readonly details: string;
  /** `concord-reason` from the trailing metadata, e.g. WRONG_SHARD or NOT_LEADER. */
  readonly reason: string | undefined;
  /** The trailing metadata of the failed call (empty for errors raised by the client itself). */
  readonly metadata: Metadata;
  /** How many attempts were made; more than 1 when the router retried before giving up. */
  readonly attempts: number;

  constructor(code: status, details: string, options: ConcordErrorOptions = {}) {
    const attempts = options.attempts ?? 1;
    super(attempts > 1 ? `${details} (gave up after ${attempts} attempts)` : details, { cause: options.cause });
    this.name = 'ConcordError';
    this.code = code;
    this.details = details;
    this.metadata = options.metadata ?? new Metadata();
    this.reason = firstValue(this.metadata, METADATA_REASON);
    this.attempts = attempts;
  }

  /** The status code's name, e.g. "ABORTED". */
  get codeName(): string {
    return status[this.code] ?? String(this.code);
  }

  /** After a failed compare-and-set (ABORTED): the key's current version, when the server sent it. */
  get currentVersion(): number | undefined {
    return parseCount(firstValue(this.metadata, METADATA_CURRENT_VERSION));
  }

  /** After NOT_LEADER: host:port of the leader, when the replica knew it. */
  get leaderHint(): string | undefined {
    const leader = firstValue(this.metadata, METADATA_LEADER);
    return leader === undefined || leader === '' ? undefined : leader;
  }

  /** After WRONG_SHARD: the ring epoch of the replica that refused the call. */
  get ringEpoch(): number | undefined {
    return parseCount(firstValue(this.metadata, METADATA_RING_EPOCH));
  }

  /** The same error, recording how many attempts led to it. */
  withAttempts(attempts: number): ConcordError {
    if (attempts === this.attempts) return this;
    return new ConcordError(this.code, this.details, { metadata: this.metadata, attempts, cause: this.cause });
  }
}

/**
 * How grpc-js (1.x, pick_first) words a call that failed because no connection to the server could
 * be established (refused, unreachable, or the channel still backing off after such a failure):
 * `UNAVAILABLE "No connection established. Last error: Error: connect ECONNREFUSED …"`. The
 * channel's picker fails the call before a stream is opened, so nothing was sent.
 */
const NO_CONNECTION_PREFIX = 'No connection established';

/**
 * Whether a failed call certainly never reached a server: grpc-js could not connect, so the request
 * was never sent, and sending it to another replica or coordinator is safe even for a write.
 *
 * Not so when a connection broke with the call in flight (`connectionLost`): the server may have
 * received and applied the request before it went away.
 */
export function failedBeforeSending(error: ConcordError): boolean {
  return error.code === status.UNAVAILABLE && error.details.startsWith(NO_CONNECTION_PREFIX);
}

/**
 * Whether the connection broke with the call in flight: grpc-js reports `UNAVAILABLE "Connection
 * dropped"` when the HTTP/2 session closed, or the socket's error ("read ECONNRESET") when the peer
 * reset it. The request may have been applied; only a read may be repeated elsewhere.
 */
export function connectionLost(error: ConcordError): boolean {
  return error.code === status.UNAVAILABLE && (error.details === 'Connection dropped' || /\b(?:ECONNRESET|EPIPE|ETIMEDOUT)\b/.test(error.details));
}

/** The shape grpc-js gives a failed call's error. */
interface GrpcCallError {
  code: number;
  details: string;
  metadata?: Metadata;
}

function isGrpcCallError(error: unknown): error is GrpcCallError {
  if (typeof error !== 'object' || error === null) return false;
  const candidate = error as { code?: unknown; details?: unknown; metadata?: unknown };
  return (
    typeof candidate.code === 'number' &&
    typeof candidate.details === 'string' &&
    (candidate.metadata === undefined || candidate.metadata instanceof Metadata)
  );
}

/**
 * Turns a failed gRPC call into a ConcordError with the same code, details and metadata. Anything
 * else is a bug in the caller or in this library and is rethrown untouched rather than disguised
 * as a status.
 */
export function toConcordError(error: unknown): ConcordError {
  if (error instanceof ConcordError) return error;
  if (isGrpcCallError(error)) {
    return new ConcordError(error.code, error.details, { metadata: error.metadata, cause: error });
  }
  throw error;
}

function firstValue(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : value.toString('utf8');
}

function parseCount(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}
