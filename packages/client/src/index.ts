export { ConcordClient, DEFAULT_DEADLINE_MS } from './concord-client.js';
export { tlsCredentials } from './tls.js';
export type { TlsOptions } from './tls.js';
export type {
  CallOptions,
  ConnectOptions,
  Consistency,
  DeleteResult,
  GetOptions,
  GetResult,
  PutResult,
  Routing,
  ScanOptions,
  WriteOptions,
} from './concord-client.js';
export {
  ConcordError,
  toConcordError,
  METADATA_CURRENT_VERSION,
  METADATA_LEADER,
  METADATA_REASON,
  METADATA_RING_EPOCH,
  REASON_NOT_LEADER,
  REASON_PROPOSAL_DROPPED,
  REASON_WRONG_SHARD,
  connectionLost,
  failedBeforeSending,
} from './errors.js';
export type { ConcordErrorOptions } from './errors.js';
export {
  ShardRouter,
  recoveryFor,
  DEFAULT_BACKOFF_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_ATTEMPTS_DURING_ELECTION,
  DEFAULT_MAX_BACKOFF_MS,
  DEFAULT_SCAN_LIMIT,
  DEFAULT_UNREACHABLE_MS,
} from './shard-router.js';
export type {
  Recovery,
  RouteCallOptions,
  RoutedDeleteRequest,
  RoutedGetRequest,
  RoutedPutRequest,
  RoutedScanRequest,
  ShardRouterOptions,
} from './shard-router.js';
export { GroupRoute, RoutingTable } from './routing-table.js';
export type { RingSource } from './routing-table.js';
export { compareKeyBytes, mergeByKey } from './merge.js';
export { CHANNEL_OPTIONS, MAX_MESSAGE_BYTES, MAX_RECONNECT_BACKOFF_MS, INITIAL_RECONNECT_BACKOFF_MS } from './calls.js';
export type { PullSource } from './calls.js';
export {
  CoordinatorSet,
  parseCoordinatorAddresses,
  worthAnotherCoordinator,
  DEFAULT_COORDINATOR_BACKOFF_MS,
  DEFAULT_COORDINATOR_MAX_BACKOFF_MS,
} from './coordinators.js';
export type { CoordinatorSetOptions } from './coordinators.js';
