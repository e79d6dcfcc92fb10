export { runCoordinator } from './main.js';
export { startCoordinator } from './coordinator-node.js';
export type { CoordinatorNode } from './coordinator-node.js';
export { compileCoordinatorOptions, parseGroups, COORDINATOR_OPTION_SPECS } from './options.js';
export type { CoordinatorOptions, ShardGroupConfig } from './options.js';
export { ShardDirectory } from './directory.js';
export type { ShardDirectoryConfig } from './directory.js';
export { createKvService, shardDeadline, toKvError, scanBatches, SCAN_BATCH_MAX_KVS, SCAN_BATCH_MAX_BYTES } from './kv-service.js';
export type { KvServiceOptions } from './kv-service.js';
export { createClusterService, groupStatus, memberRoleOf, STATUS_PROBE_TIMEOUT_MS } from './cluster-service.js';
export type { ClusterServiceOptions } from './cluster-service.js';
export {
  createTxnService,
  createMapReduceService,
  TXN_UNIMPLEMENTED_MESSAGE,
  MAPREDUCE_UNIMPLEMENTED_MESSAGE,
} from './unimplemented-services.js';
