// One coordinator: the public KV, Txn, MapReduce and Cluster services, wired from typed options
// (src/main.ts reads flags and env).
//
// With the raft engine one server carries the public services and concord.v1.Consensus (the meta
// group's peer messages), so a coordinator's --peers address is also where followers forward
// client calls to it when it leads. The leader serves every public call itself; followers forward
// them (forwarding.ts). With the config engine this process is the only coordinator and serves
// everything from --groups. With --tls-* the server and every channel this coordinator opens (to
// shard replicas, to the other coordinators) are mutual TLS.

import { status } from '@grpc/grpc-js';
import { METADATA_LEADER, METADATA_REASON, REASON_NOT_LEADER } from '@concord/client';
import { BootstrapGuard, ConsensusPeerService, type ConsensusStatus } from '@concord/consensus';
import { ClusterService } from '@concord/proto/cluster';
import { KVService } from '@concord/proto/kv';
import { MapReduceService } from '@concord/proto/mapreduce';
import { TxnService } from '@concord/proto/txn';
import { ConcordServer, ServiceError, channelCredentials, startMetricsServer, type Logger, type ServiceBinding } from '@concord/runtime';
import { createClusterService } from './cluster-service.js';
import { ShardDirectory } from './directory.js';
import { createDirectoryRouter } from './directory-router.js';
import { LeaderForwarder, type ForwardingPolicy } from './forwarding.js';
import { createKvService } from './kv-service.js';
import { META_GROUP_ID, MetaGroup } from './meta/meta-group.js';
import type { MetaCommand } from './meta/commands.js';
import { isMemberProbe } from './meta-status.js';
import type { CoordinatorEngine, CoordinatorOptions } from './options.js';
import { createMapReduceService, createTxnService } from './unimplemented-services.js';

export interface CoordinatorNode {
  /**
   * host:port clients and peers dial: the --peers address (or, joining, --advertise or --listen)
   * with raft; else --advertise, or the bound address (also when port 0 was asked for).
   */
  readonly address: string;
  /** The port the server is bound to. */
  readonly port: number;
  readonly memberId: string;
  readonly engine: CoordinatorEngine;
  /** host:port of the /metrics endpoint, when --metrics-listen asked for one. */
  readonly metricsAddress: string | undefined;
  /** This coordinator's status in the meta group; undefined with the config engine and while not running. */
  metaStatus(): ConsensusStatus | undefined;
  /** Stops accepting calls (in-flight ones get the grace period), then closes channels and the meta group. */
  stop(): Promise<void>;
}

/** The public services, whose health is NOT_SERVING until the meta group has recovered. */
const PUBLIC_SERVICE_NAMES = ['concord.v1.KV', 'concord.v1.Txn', 'concord.v1.MapReduce', 'concord.v1.Cluster'] as const;

/** Starts serving; resolves once the server is bound (and, with raft, the meta member recovered its log). */
export async function startCoordinator(options: CoordinatorOptions, logger: Logger): Promise<CoordinatorNode> {
  // First, so a port already taken fails the start before anything else is running.
  const metricsServer = options.metricsListen === undefined ? undefined : await startMetricsServer({ ...options.metricsListen, logger });
  let node: Omit<CoordinatorNode, 'metricsAddress'>;
  try {
    node = options.engine === 'raft' ? await startRaftCoordinator(options, logger) : await startConfigCoordinator(options, logger);
  } catch (error) {
    await metricsServer?.close();
    throw error;
  }
  let stopping: Promise<void> | undefined;
  return {
    ...node,
    metricsAddress: metricsServer?.address,
    stop() {
      // The metrics server last, so a scrape during the drain still sees this coordinator.
      stopping ??= node.stop().finally(() => metricsServer?.close());
      return stopping;
    },
  };
}

async function startConfigCoordinator(options: CoordinatorOptions, logger: Logger): Promise<Omit<CoordinatorNode, 'metricsAddress'>> {
  const directory = new ShardDirectory({ ringEpoch: options.ringEpoch, ringVnodes: options.ringVnodes, groups: options.groups });
  let selfAddress = options.advertisedAddress;
  const wiring = publicServices({ options, directory, selfAddress: () => selfAddress });
  let server: ConcordServer;
  try {
    server = await ConcordServer.start({ host: options.listenHost, port: options.listenPort, logger, services: wiring.bindings, ...serverTls(options) });
  } catch (error) {
    wiring.close();
    throw error;
  }
  // Port 0 is only known once bound; --advertise, when given, is what others are told.
  if (selfAddress === '') selfAddress = server.address;
  logger.debug({ ring_epoch: options.ringEpoch, groups: options.groups.map((group) => group.groupId) }, 'ring loaded from configuration');

  let stopping: Promise<void> | undefined;
  return {
    address: selfAddress,
    port: server.port,
    memberId: options.memberId,
    engine: 'config',
    metaStatus: () => undefined,
    stop() {
      // The server goes first so calls in flight can still reach their shards.
      stopping ??= server.shutdown().then(() => wiring.close());
      return stopping;
    },
  };
}

/**
 * The server starts first, then the meta member recovers: the other coordinators must reach it
 * while it does. Until then its public services report NOT_SERVING and answer UNAVAILABLE (no
 * meta leader is known yet).
 */
async function startRaftCoordinator(options: CoordinatorOptions, logger: Logger): Promise<Omit<CoordinatorNode, 'metricsAddress'>> {
  // Its --peers entry; with --join, its --advertise or --listen address (the leader is told it when it adds this member).
  const address = options.advertisedAddress;
  if (address === '') throw new Error(`peers: must include this coordinator's member id ${options.memberId}, or --join must give its address`);
  const peerService = new ConsensusPeerService({ logger });
  const meta = new MetaGroup({
    memberId: options.memberId,
    address,
    peers: options.peers,
    dataDir: options.dataDir,
    tickMs: options.tickMs,
    electionTicks: options.electionTicks,
    heartbeatTicks: options.heartbeatTicks,
    sync: options.sync,
    snapshotEvery: options.snapshotEvery,
    maxUncommittedBytes: options.maxUncommittedBytes,
    snapshotLogRatio: options.snapshotLogRatio,
    snapshotRatioMinBytes: options.snapshotRatioMinBytes,
    seed: options.groups.length === 0 ? undefined : { ringEpoch: options.ringEpoch, vnodes: options.ringVnodes, groups: options.groups },
    peerService,
    credentials: channelCredentials(options.tls),
    logger,
  });
  const directory = new ShardDirectory(() => meta.directory);
  const forwarder = new LeaderForwarder({ memberId: options.memberId, leader: () => meta.leader(), credentials: channelCredentials(options.tls) });
  const wiring = publicServices({
    options,
    directory,
    selfAddress: () => address,
    meta,
    forwarder,
    readBarrier: async () => {
      const outcome = await meta.readBarrier();
      if (outcome.kind === 'ready') return;
      const leader = outcome.leaderAddress ?? '';
      throw new ServiceError(
        status.UNAVAILABLE,
        `coordinator ${options.memberId} no longer leads the meta group${outcome.leaderId !== undefined ? ` (the leader is now ${outcome.leaderId})` : ''}; retry`,
        leader === '' ? { [METADATA_REASON]: REASON_NOT_LEADER } : { [METADATA_REASON]: REASON_NOT_LEADER, [METADATA_LEADER]: leader },
      );
    },
  });
  const closeAll = (): void => {
    forwarder.close();
    wiring.close();
  };

  let server: ConcordServer;
  try {
    server = await ConcordServer.start({
      host: options.listenHost,
      port: options.listenPort,
      logger,
      services: [...wiring.bindings, peerService.binding()],
      ...serverTls(options),
    });
  } catch (error) {
    closeAll();
    throw error;
  }
  for (const name of PUBLIC_SERVICE_NAMES) server.setServing(name, false);
  let guard: BootstrapGuard | undefined;
  try {
    // An empty data dir bootstraps from --peers only if no other coordinator has known this one
    // before (one that lost its data must not start as new: bootstrap-guard.ts).
    guard = await BootstrapGuard.open({ groupId: META_GROUP_ID, memberId: options.memberId, dataDir: options.dataDir, peerService, logger });
    await guard.check({
      peers: options.peers,
      join: options.join,
      credentials: channelCredentials(options.tls),
      timeoutMs: options.bootstrapCheckTimeoutMs,
      force: options.forceBootstrap,
    });
    await meta.start();
    guard.running(() => meta.status());
  } catch (error) {
    await guard?.close();
    peerService.close();
    await server.shutdown();
    closeAll();
    throw error;
  }
  for (const name of PUBLIC_SERVICE_NAMES) server.setServing(name, true);
  const recovered = meta.status();
  logger.debug(
    { applied_index: recovered?.appliedIndex, ring_epoch: meta.directory?.ring.epoch, peers: Object.keys(options.peers) },
    'meta member recovered',
  );
  if (recovered !== undefined && !recovered.members.some((member) => member.memberId === options.memberId)) {
    // A joining coordinator (or one removed from the group): until the leader adds it and
    // replicates to it, it knows no leader and answers calls with NOT_LEADER.
    logger.info(
      { member_id: options.memberId, address, peers: options.peers },
      `not a member of the meta group: waiting for its leader to add this coordinator (concord member add meta ${options.memberId} ${address})`,
    );
  }

  let stopping: Promise<void> | undefined;
  return {
    address,
    port: server.port,
    memberId: options.memberId,
    engine: 'raft',
    metaStatus: () => meta.status(),
    stop() {
      // The peers' message streams never end on their own: the peer service answers them first,
      // or the server's graceful shutdown would wait them out. Then the server, so calls in flight
      // still reach shards and the leader; the meta group last.
      stopping ??= (async () => {
        // A meta leader hands over first, while it still hears its peers, so the coordinators
        // need not wait out an election timeout before the meta group serves again.
        await meta.handOffLeadership();
        peerService.close();
        await server.shutdown();
        closeAll();
        await meta.stop();
        await guard?.close();
      })();
      return stopping;
    },
  };
}

/** ConcordServer.start's tls setting, when --tls-* gave one. */
function serverTls(options: CoordinatorOptions): { tls?: NonNullable<CoordinatorOptions['tls']> } {
  return options.tls !== undefined ? { tls: options.tls } : {};
}

interface PublicServicesParams {
  options: CoordinatorOptions;
  directory: ShardDirectory;
  selfAddress: () => string;
  /** Raft: the meta group, and the forwarder that sends followers' calls to its leader. */
  meta?: MetaGroup;
  forwarder?: LeaderForwarder;
  readBarrier?: () => Promise<void>;
}

/** Cluster.Status is answered by the member that receives it when it is the internal probe of that member, or when no leader is known. */
const CLUSTER_FORWARDING: ForwardingPolicy = {
  alwaysLocal: (method, call) => method === 'status' && isMemberProbe(call.metadata),
  // A status page is most needed when the meta group has no leader: say what this member sees.
  localWithoutLeader: (method) => method === 'status',
};

function publicServices(params: PublicServicesParams): { bindings: ServiceBinding[]; close(): void } {
  const { options, directory, forwarder } = params;
  const credentials = channelCredentials(options.tls);
  const { router, refreshIfChanged } = createDirectoryRouter(directory, credentials);
  const cluster = createClusterService({
    credentials,
    directory,
    memberId: options.memberId,
    selfAddress: params.selfAddress,
    knownLeader: (groupId) => router.knownLeader(groupId),
    ...(params.meta !== undefined ? { meta: params.meta } : {}),
    ...(params.readBarrier !== undefined ? { readBarrier: params.readBarrier } : {}),
    ...(params.meta !== undefined ? { proposeMeta: (command: MetaCommand) => params.meta!.propose(command) } : {}),
    ...(params.meta !== undefined ? { metaMembership: params.meta } : {}),
  });
  const bind = (name: string, definition: ServiceBinding['definition'], implementation: ServiceBinding['implementation'], policy?: ForwardingPolicy): ServiceBinding => ({
    name,
    definition,
    implementation: forwarder === undefined ? implementation : forwarder.wrap(definition, implementation, policy),
  });
  const bindings = [
    bind('concord.v1.KV', KVService, createKvService({ router, shardTimeoutMs: options.shardTimeoutMs, beforeRoute: refreshIfChanged })),
    bind('concord.v1.Txn', TxnService, createTxnService()),
    bind('concord.v1.MapReduce', MapReduceService, createMapReduceService()),
    bind('concord.v1.Cluster', ClusterService, cluster.implementation, CLUSTER_FORWARDING),
  ];
  return {
    bindings,
    close: () => {
      router.close();
      cluster.close();
    },
  };
}
