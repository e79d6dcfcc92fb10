export { runCoordinator } from './main.js';
export { startCoordinator } from './coordinator-node.js';
export type { CoordinatorNode } from './coordinator-node.js';
export { compileCoordinatorOptions, parseGroups, parsePeers, COORDINATOR_OPTION_SPECS, COORDINATOR_ENGINES } from './options.js';
export type { CoordinatorOptions, CoordinatorEngine, ShardGroupConfig } from './options.js';
export { ShardDirectory, NO_RING_MESSAGE } from './directory.js';
export type { ShardDirectoryConfig, DirectorySource } from './directory.js';
export { MetaStateMachine } from './meta/meta-state-machine.js';
export { MetaGroup, META_GROUP_ID } from './meta/meta-group.js';
export type { MetaGroupOptions, MetaLeader } from './meta/meta-group.js';
export { encodeMetaCommand, decodeMetaCommand } from './meta/commands.js';
export type { MetaCommand, MetaResult } from './meta/commands.js';
export type { DirectoryState, DirectorySeed, ShardGroupEntry } from './meta/directory-state.js';
export { LeaderForwarder, METADATA_FORWARDED_FROM, NO_META_LEADER_MESSAGE } from './forwarding.js';
export type { ForwardingPolicy, LeaderForwarderOptions } from './forwarding.js';
export { METADATA_STATUS_SCOPE, STATUS_SCOPE_MEMBER } from './meta-status.js';
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
