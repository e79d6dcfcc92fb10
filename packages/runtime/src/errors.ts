import { Metadata, status, type StatusObject } from '@grpc/grpc-js';

/**
 * The one error type allowed to cross the gRPC edge: a status code and a message that says what to
 * fix, plus optional trailing metadata (e.g. `concord-reason: WRONG_SHARD`). Anything else thrown
 * by a handler becomes INTERNAL with a generic message (details go to the log and the span).
 */
export class ServiceError extends Error {
  constructor(
    readonly code: status,
    message: string,
    readonly metadata: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ServiceError';
  }
}

/** The message every unexpected failure gets on the wire: internals stay in the log and the span. */
export const INTERNAL_ERROR_MESSAGE = 'internal error';

/**
 * The shape of an error a grpc-js client reports for a failed downstream call: a numeric status
 * code, the server's details and its trailing metadata.
 */
interface RelayedGrpcError {
  code: number;
  details: string;
  metadata?: MetadataLike | null;
}

/** What is read from a downstream call's trailers; duck-typed so another copy of grpc-js works too. */
interface MetadataLike {
  getMap(): Record<string, unknown>;
  get(key: string): unknown[];
}

function isMetadataLike(value: unknown): value is MetadataLike {
  const candidate = value as Partial<MetadataLike> | null | undefined;
  return typeof candidate?.getMap === 'function' && typeof candidate.get === 'function';
}

function isValidStatusCode(code: unknown): code is number {
  return typeof code === 'number' && Number.isInteger(code) && code >= status.OK && code <= status.UNAUTHENTICATED;
}

/**
 * Whether `error` came from a downstream gRPC call (grpc-js `ServiceError`): relaying its status
 * unchanged keeps a shard's INVALID_ARGUMENT or WRONG_SHARD meaningful when the coordinator
 * forwards it. OK is excluded: a failed call is never OK.
 */
export function isRelayedGrpcError(error: unknown): error is RelayedGrpcError {
  if (typeof error !== 'object' || error === null) return false;
  const candidate = error as { code?: unknown; details?: unknown; metadata?: unknown };
  return (
    isValidStatusCode(candidate.code) &&
    candidate.code !== status.OK &&
    typeof candidate.details === 'string' &&
    (candidate.metadata === undefined || candidate.metadata === null || isMetadataLike(candidate.metadata))
  );
}

/** Whether toStatusObject would hide this error's message (so the caller should log it). */
export function isUnexpectedError(error: unknown): boolean {
  return !(error instanceof ServiceError) && !isRelayedGrpcError(error);
}

/**
 * Maps any thrown value to the status object sent to the client: a ServiceError keeps its code,
 * message and metadata; a relayed downstream gRPC error keeps its code, details and trailing
 * metadata; anything else becomes INTERNAL "internal error" (never the message or stack).
 */
export function toStatusObject(error: unknown): StatusObject {
  if (error instanceof ServiceError) {
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(error.metadata)) addEntry(metadata, key, value);
    return { code: error.code, details: error.message, metadata };
  }
  if (isRelayedGrpcError(error)) {
    return { code: error.code, details: error.details, metadata: copyTrailers(error.metadata ?? undefined) };
  }
  return { code: status.INTERNAL, details: INTERNAL_ERROR_MESSAGE, metadata: new Metadata() };
}

/**
 * Adds one entry, skipping what grpc-js would refuse (an invalid key, a string for a `-bin` key):
 * this runs while answering a failed call, where throwing would lose the answer altogether.
 */
function addEntry(metadata: Metadata, key: string, value: unknown): void {
  if (typeof value !== 'string' && !Buffer.isBuffer(value)) return;
  try {
    metadata.add(key, value);
  } catch {
    // Dropped: the status itself still reaches the client.
  }
}

/**
 * Copies the application entries of a downstream call's trailers. Transport-level entries that
 * grpc-js may have recorded are dropped: re-sending them would confuse the next client.
 */
function copyTrailers(source: MetadataLike | undefined): Metadata {
  const metadata = new Metadata();
  if (source === undefined) return metadata;
  for (const key of Object.keys(source.getMap())) {
    if (key.startsWith('grpc-') || key.startsWith(':') || HOP_BY_HOP.has(key)) continue;
    for (const value of source.get(key)) addEntry(metadata, key, value);
  }
  return metadata;
}

const HOP_BY_HOP = new Set(['content-type', 'te', 'user-agent', 'content-length', 'date', 'server']);
