// One coordinator: the public KV, Txn, MapReduce and Cluster services, wired from typed options
// (src/main.ts reads flags and env).

import { ShardRouter } from '@concord/client';
import { ClusterService } from '@concord/proto/cluster';
import { KVService } from '@concord/proto/kv';
import { MapReduceService } from '@concord/proto/mapreduce';
import { TxnService } from '@concord/proto/txn';
import { ConcordServer, type Logger } from '@concord/runtime';
import { createClusterService } from './cluster-service.js';
import { ShardDirectory } from './directory.js';
import { createKvService } from './kv-service.js';
import type { CoordinatorOptions } from './options.js';
import { createMapReduceService, createTxnService } from './unimplemented-services.js';

export interface CoordinatorNode {
  /** host:port clients dial (the bound port, also when port 0 was asked for). */
  readonly address: string;
  readonly port: number;
  /** Stops accepting calls (in-flight ones get the grace period), then closes shard channels. */
  stop(): Promise<void>;
}

/** Starts serving; resolves once the server is bound. Shards are not contacted until a call needs them. */
export async function startCoordinator(options: CoordinatorOptions, logger: Logger): Promise<CoordinatorNode> {
  const directory = new ShardDirectory({ ringEpoch: options.ringEpoch, ringVnodes: options.ringVnodes, groups: options.groups });
  // The router reads the ring straight from the directory: no network hop, and no GetRing to itself.
  const router = new ShardRouter({ ringSource: async () => directory.ringResponse() });
  let selfAddress = '';
  const cluster = createClusterService({
    directory,
    memberId: options.memberId,
    selfAddress: () => selfAddress,
    knownLeader: (groupId) => router.knownLeader(groupId),
  });
  let server: ConcordServer;
  try {
    server = await ConcordServer.start({
      host: options.listenHost,
      port: options.listenPort,
      logger,
      services: [
        { name: 'concord.v1.KV', definition: KVService, implementation: createKvService({ router, shardTimeoutMs: options.shardTimeoutMs }) },
        { name: 'concord.v1.Txn', definition: TxnService, implementation: createTxnService() },
        { name: 'concord.v1.MapReduce', definition: MapReduceService, implementation: createMapReduceService() },
        { name: 'concord.v1.Cluster', definition: ClusterService, implementation: cluster.implementation },
      ],
    });
  } catch (error) {
    router.close();
    cluster.close();
    throw error;
  }
  selfAddress = server.address;
  logger.debug({ ring_epoch: directory.ring.epoch, groups: directory.groups.map((group) => group.groupId) }, 'ring loaded from configuration');

  let stopping: Promise<void> | undefined;
  return {
    address: server.address,
    port: server.port,
    stop() {
      // The server goes first so calls in flight can still reach their shards.
      stopping ??= server.shutdown().then(() => {
        router.close();
        cluster.close();
      });
      return stopping;
    },
  };
}
