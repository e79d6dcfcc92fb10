// One shard replica: the key-value state machine, the consensus group that replicates it and the
// gRPC server in front of them, wired from typed options (src/main.ts reads flags and env).

import { ShardService, type ShardCommandResult } from '@concord/proto/shard';
import { SingleGroup, type ConsensusGroup } from '@concord/consensus';
import { HashRing } from '@concord/ring';
import { ConcordServer, type Logger } from '@concord/runtime';
import { KvStateMachine } from './kv-state-machine.js';
import type { ShardOptions } from './options.js';
import { SHARD_SERVICE_NAME, ShardHandlers, createShardServer } from './shard-service.js';

export interface ShardNode {
  /** host:port clients dial (the bound port, also when port 0 was asked for). */
  readonly address: string;
  readonly port: number;
  readonly groupId: string;
  readonly memberId: string;
  /** Stops accepting calls (in-flight ones get the grace period), then closes the group's log. */
  stop(): Promise<void>;
}

/**
 * Starts the server first, then recovers the group: with port 0 the group only learns the address
 * it reports to clients once the server is bound. Until recovery ends the Shard service reports
 * NOT_SERVING and answers UNAVAILABLE. Resolves once the replica serves.
 */
export async function startShardNode(options: ShardOptions, logger: Logger): Promise<ShardNode> {
  const ring = new HashRing({ epoch: options.ringEpoch, vnodesPerGroup: options.ringVnodes, groups: options.ringGroups });
  const stateMachine = new KvStateMachine();
  const handlers = new ShardHandlers({ groupId: options.groupId, memberId: options.memberId, ring, stateMachine });
  const server = await ConcordServer.start({
    host: options.listenHost,
    port: options.listenPort,
    services: [{ name: SHARD_SERVICE_NAME, definition: ShardService, implementation: createShardServer(handlers) }],
    logger,
  });
  server.setServing(SHARD_SERVICE_NAME, false);
  const address = server.address;

  let group: ConsensusGroup<ShardCommandResult>;
  try {
    group = createGroup(options, address, stateMachine);
    await group.start();
  } catch (error) {
    await server.shutdown();
    throw error;
  }
  handlers.attachGroup(group);
  server.setServing(SHARD_SERVICE_NAME, true);
  logger.debug(
    { group_id: options.groupId, engine: group.engine, applied_index: group.status().appliedIndex, key_count: stateMachine.keyCount },
    'group recovered',
  );

  let stopping: Promise<void> | undefined;
  return {
    address,
    port: server.port,
    groupId: options.groupId,
    memberId: options.memberId,
    stop() {
      // The server goes first so no call is left waiting on a group that has stopped.
      stopping ??= server.shutdown().then(() => group.stop());
      return stopping;
    },
  };
}

function createGroup(options: ShardOptions, address: string, stateMachine: KvStateMachine): ConsensusGroup<ShardCommandResult> {
  switch (options.engine) {
    case 'single':
      return new SingleGroup<ShardCommandResult>({
        memberId: options.memberId,
        address,
        dataDir: options.dataDir,
        stateMachine,
        sync: options.sync,
        snapshotEvery: options.snapshotEvery,
      });
  }
}
