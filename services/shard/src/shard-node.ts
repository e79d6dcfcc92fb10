// One shard replica: the key-value state machine, the consensus group that replicates it and the
// gRPC server in front of them, wired from typed options (src/main.ts reads flags and env).
//
// With the raft engine one server carries both concord.v1.Shard (clients, the coordinator) and
// concord.v1.Consensus (the other members of the group), so a member's --peers address is also
// the address a NOT_LEADER answer names as the leader's. With --tls-* that server and the
// channels to the other members are mutual TLS.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ShardService, type ShardCommandResult } from '@concord/proto/shard';
import { BootstrapGuard, ConsensusPeerService, GrpcRaftTransport, RaftGroup, SingleGroup, type ConsensusGroup } from '@concord/consensus';
import { HashRing } from '@concord/ring';
import { ConcordServer, channelCredentials, processMetrics, startMetricsServer, type Logger, type Metrics, type MetricsServer, type ServiceBinding } from '@concord/runtime';
import { KvStateMachine } from './kv-state-machine.js';
import type { ShardOptions } from './options.js';
import { SHARD_SERVICE_NAME, ShardHandlers, createShardServer } from './shard-service.js';

/** How long stop() waits for the Get/Put/Delete/Scan calls in progress (the server's own grace period). */
export const SHUTDOWN_DRAIN_MS = 5_000;

export interface ShardNode {
  /**
   * host:port clients and peers dial: --advertise, else the --peers (or, joining, the --listen)
   * address with raft, else the bound address (also when port 0 was asked for).
   */
  readonly address: string;
  /** The port the server is bound to. */
  readonly port: number;
  readonly groupId: string;
  readonly memberId: string;
  readonly engine: ShardOptions['engine'];
  /** host:port of the /metrics endpoint, when --metrics-listen asked for one. */
  readonly metricsAddress: string | undefined;
  /** Stops accepting calls (in-flight ones get the grace period), then stops the group and closes its log. */
  stop(): Promise<void>;
}

/**
 * Starts the server first, then recovers the group: with port 0 the single engine only learns the
 * address it reports to clients once the server is bound, and a Raft member must already answer
 * its peers while it recovers. Until recovery ends the Shard service reports NOT_SERVING and
 * answers UNAVAILABLE. Resolves once the replica serves (for Raft: once it has recovered its own
 * log; electing a leader takes an election timeout more).
 */
export async function startShardNode(options: ShardOptions, logger: Logger): Promise<ShardNode> {
  refuseOtherEngineData(options);
  // First, so a port already taken fails the start before anything else is running.
  const metricsServer = options.metricsListen === undefined ? undefined : await startMetricsServer({ ...options.metricsListen, logger });
  try {
    return await startServing(options, logger, metricsServer);
  } catch (error) {
    await metricsServer?.close();
    throw error;
  }
}

async function startServing(options: ShardOptions, logger: Logger, metricsServer: MetricsServer | undefined): Promise<ShardNode> {
  const ring = new HashRing({ epoch: options.ringEpoch, vnodesPerGroup: options.ringVnodes, groups: options.ringGroups });
  const stateMachine = new KvStateMachine();
  const handlers = new ShardHandlers({ groupId: options.groupId, memberId: options.memberId, ring, stateMachine });
  const peerService = options.engine === 'raft' ? new ConsensusPeerService({ logger }) : undefined;
  const services: ServiceBinding[] = [{ name: SHARD_SERVICE_NAME, definition: ShardService, implementation: createShardServer(handlers) }];
  if (peerService !== undefined) services.push(peerService.binding());
  const server = await ConcordServer.start({
    host: options.listenHost,
    port: options.listenPort,
    services,
    logger,
    ...(options.tls !== undefined ? { tls: options.tls } : {}),
  });
  server.setServing(SHARD_SERVICE_NAME, false);
  const address = options.advertisedAddress !== '' ? options.advertisedAddress : server.address;

  let group: ConsensusGroup<ShardCommandResult>;
  let guard: BootstrapGuard | undefined;
  try {
    if (peerService !== undefined) {
      // An empty data dir bootstraps from --peers only if no peer has known this member before
      // (one that lost its data must not start as new: bootstrap-guard.ts). BootstrapRefusedError otherwise.
      guard = await BootstrapGuard.open({ groupId: options.groupId, memberId: options.memberId, dataDir: options.dataDir, peerService, logger });
      await guard.check({
        peers: options.peers,
        join: options.join,
        credentials: channelCredentials(options.tls),
        timeoutMs: options.bootstrapCheckTimeoutMs,
        force: options.forceBootstrap,
      });
    }
    const started = createGroup(options, address, stateMachine, peerService, logger);
    group = started;
    await started.start();
    guard?.running(() => started.status());
  } catch (error) {
    await guard?.close();
    peerService?.close();
    await server.shutdown();
    throw error;
  }
  handlers.attachGroup(group);
  const stopSampling = sampleStore(processMetrics(), options, stateMachine);
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
    engine: options.engine,
    metricsAddress: metricsServer?.address,
    stop() {
      // First the calls in progress, while the peers are still heard: a leader's proposals need
      // their acknowledgements to commit. Then a leader hands its leadership over. Then the peer service, whose message streams never end
      // on their own (the server's graceful shutdown would wait them out); then the server, so no
      // call is left waiting on a group that has stopped; the group last.
      stopping ??= (async () => {
        try {
          server.setServing(SHARD_SERVICE_NAME, false);
          await handlers.drain(SHUTDOWN_DRAIN_MS);
          // A leader hands over to its most up-to-date follower (bounded by an election timeout),
          // so its group elects no one the slow way; calls keep being refused meanwhile.
          await group.handOffLeadership();
          peerService?.close();
          await server.shutdown();
          await group.stop();
          await guard?.close();
        } finally {
          // Last, so a scrape during the drain still sees this replica.
          stopSampling();
          await metricsServer?.close();
        }
      })();
      return stopping;
    },
  };
}

function createGroup(
  options: ShardOptions,
  address: string,
  stateMachine: KvStateMachine,
  peerService: ConsensusPeerService | undefined,
  logger: Logger,
): ConsensusGroup<ShardCommandResult> {
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
    case 'raft': {
      if (peerService === undefined) throw new Error('the raft engine needs the consensus peer service');
      const transport = new GrpcRaftTransport({
        groupId: options.groupId,
        memberId: options.memberId,
        peerService,
        credentials: channelCredentials(options.tls),
        logger,
      });
      return new RaftGroup<ShardCommandResult>({
        groupId: options.groupId,
        memberId: options.memberId,
        address,
        peers: options.peers,
        dataDir: options.dataDir,
        stateMachine,
        transport,
        tickMs: options.tickMs,
        electionTicks: options.electionTicks,
        heartbeatTicks: options.heartbeatTicks,
        readOnlyMode: options.readMode === 'lease' ? 'lease_based' : 'safe',
        snapshotEvery: options.snapshotEvery,
        maxUncommittedBytes: options.maxUncommittedBytes,
        snapshotLogRatio: options.snapshotLogRatio,
        snapshotRatioMinBytes: options.snapshotRatioMinBytes,
        sync: options.sync,
        logger,
      });
    }
  }
}

/**
 * The engines keep their files side by side in a data dir (single: wal/ and snapshot.bin; raft:
 * raft/), so a replica restarted with the other engine would start empty next to its data and
 * serve as if every key were gone. Refuse instead, naming what was found.
 */
function refuseOtherEngineData(options: ShardOptions): void {
  const found =
    options.engine === 'raft'
      ? ['wal', 'snapshot.bin'].filter((name) => existsSync(join(options.dataDir, name)))
      : ['raft'].filter((name) => existsSync(join(options.dataDir, name)));
  if (found.length === 0) return;
  const other = options.engine === 'raft' ? 'single' : 'raft';
  throw new Error(
    `${options.dataDir} holds data of the ${other} engine (${found.join(', ')}), and this replica runs --engine ${options.engine}: ` +
      `run it with --engine ${other}, or point --data-dir at an empty folder`,
  );
}

/**
 * concord_shard_store_keys and concord_shard_store_bytes of this replica, read from its state
 * machine at each scrape (docs/metrics.md). Returns what removes them.
 */
function sampleStore(metrics: Metrics, options: ShardOptions, stateMachine: KvStateMachine): () => void {
  const labels = { group: options.groupId, member: options.memberId };
  const keys = metrics.sampledGauge({
    name: 'concord_shard_store_keys',
    help: "Keys in this replica's state machine.",
    labelNames: ['group', 'member'],
  });
  const bytes = metrics.sampledGauge({
    name: 'concord_shard_store_bytes',
    help: "Bytes of the records in this replica's state machine, off the JavaScript heap: live, and dead (overwritten or deleted, not reclaimed yet).",
    labelNames: ['group', 'member', 'kind'],
  });
  const removers = [
    keys.sample(labels, () => stateMachine.keyCount),
    bytes.sample({ ...labels, kind: 'live' }, () => stateMachine.storeBytes.live),
    bytes.sample({ ...labels, kind: 'dead' }, () => stateMachine.storeBytes.dead),
  ];
  return () => {
    for (const remove of removers) remove();
  };
}
