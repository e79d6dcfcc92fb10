export { runShard } from './main.js';
export { startShardNode } from './shard-node.js';
export type { ShardNode } from './shard-node.js';
export { compileShardOptions, SHARD_OPTION_SPECS, SHARD_ENGINES } from './options.js';
export type { ShardOptions, ShardEngine } from './options.js';
export { KvStateMachine } from './kv-state-machine.js';
export type { StoredValue, ScanOptions } from './kv-state-machine.js';
export { compareKeys } from './key-order.js';
export {
  ShardHandlers,
  createShardServer,
  SHARD_SERVICE_NAME,
  SCAN_BATCH_MAX_KVS,
  SCAN_BATCH_MAX_BYTES,
  METADATA,
  REASONS,
} from './shard-service.js';
export type { ShardHandlersOptions } from './shard-service.js';
