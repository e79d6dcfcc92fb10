// The generated code lives under src/gen (DO NOT EDIT; regenerate with `npm run gen`). Import a
// contract through its subpath, e.g. `import { KVClient } from '@concord/proto/kv'`.
import { fileURLToPath } from 'node:url';

/** Path of the FileDescriptorSet of every Concord proto, used by gRPC server reflection. */
export const descriptorSetPath: string = fileURLToPath(new URL('../descriptor/concord.binpb', import.meta.url));

/** Fully qualified names of the public services, for reflection and health. */
export const publicServiceNames = ['concord.v1.KV', 'concord.v1.Txn', 'concord.v1.MapReduce', 'concord.v1.Cluster'] as const;

export { CHANNEL_OPTIONS, INITIAL_RECONNECT_BACKOFF_MS, MAX_MESSAGE_BYTES, MAX_RECONNECT_BACKOFF_MS, withoutIpServerName } from './channel-options.js';
