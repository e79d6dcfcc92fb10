// This coordinator's member of the meta group: the Raft group the coordinators share, replicating
// the MetaStateMachine. Also seeds an empty group with the directory the flags describe.
//
// SEEDING. --groups, --ring-vnodes and --ring-epoch seed an EMPTY meta group only. Whichever
// member leads while the replicated state is still empty proposes a bootstrap from its own flags
// (only a leader can propose; a later leader does the same if the first one died before the
// bootstrap committed). It first waits for a read barrier, so "empty" means empty as of every
// entry committed before it became leader, not merely not applied here yet. Founding members
// should be started with the same flags; if they are not, the first bootstrap to commit wins and
// the state machine refuses the others. Once the state holds a ring, a member whose flags
// describe another logs a warning and serves the replicated ring.

import {
  GrpcRaftTransport,
  RaftGroup,
  type ConsensusPeerService,
  type ConsensusStatus,
  type MembershipChange,
  type MembershipOutcome,
  type TransferOutcome,
  type ProposeOutcome,
  type ReadBarrierOutcome,
} from '@concord/consensus';
import type { ChannelCredentials } from '@grpc/grpc-js';
import type { Logger } from '@concord/runtime';
import { encodeMetaCommand, type MetaCommand, type MetaResult } from './commands.js';
import { describeSeed, sameSeed, seedOf, type DirectorySeed, type DirectoryState } from './directory-state.js';
import { MetaStateMachine } from './meta-state-machine.js';

/** The meta group's id on the consensus peer service, and in Cluster.Status. */
export const META_GROUP_ID = 'meta';

/** Who leads the meta group, as this member knows it. */
export type MetaLeader = { kind: 'self' } | { kind: 'remote'; memberId: string; address: string } | { kind: 'unknown' };

export interface MetaGroupOptions {
  memberId: string;
  /** host:port this coordinator serves on: its --peers entry (its --listen address when it joins). */
  address: string;
  /**
   * The meta group's initial members (id → host:port); read only to bootstrap an empty data dir.
   * Without this member among them it joins a running group: it starts with no membership, never
   * campaigns, and waits until the leader adds it (Cluster.ChangeShardMembership, group "meta").
   */
  peers: Readonly<Record<string, string>>;
  dataDir: string;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  sync: boolean;
  snapshotEvery: number;
  /** See RaftGroupOptions; RAFT_DEFAULTS when absent. */
  maxUncommittedBytes?: number;
  snapshotLogRatio?: number;
  snapshotRatioMinBytes?: number;
  /** The directory the flags describe, proposed when this member leads an empty group; none: never seeds. */
  seed: DirectorySeed | undefined;
  peerService: ConsensusPeerService;
  /** Credentials of the channels to the other coordinators (mutual TLS with --tls-*); default plaintext. */
  credentials?: ChannelCredentials;
  logger: Logger;
}

export class MetaGroup {
  readonly stateMachine = new MetaStateMachine();
  private readonly group: RaftGroup<MetaResult>;
  private readonly logger: Logger;
  private running = false;
  /** Checks, every tick until done, whether to seed the group and whether the flags agree with it. */
  private seedTimer: NodeJS.Timeout | undefined;
  private seeding = false;
  /** The state machine refused this member's seed (it cannot become valid): never propose it again. */
  private seedRefused = false;

  constructor(private readonly options: MetaGroupOptions) {
    this.logger = options.logger;
    this.group = new RaftGroup<MetaResult>({
      groupId: META_GROUP_ID,
      memberId: options.memberId,
      address: options.address,
      peers: options.peers,
      dataDir: options.dataDir,
      stateMachine: this.stateMachine,
      transport: new GrpcRaftTransport({
        groupId: META_GROUP_ID,
        memberId: options.memberId,
        peerService: options.peerService,
        ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
        logger: options.logger,
      }),
      tickMs: options.tickMs,
      electionTicks: options.electionTicks,
      heartbeatTicks: options.heartbeatTicks,
      sync: options.sync,
      snapshotEvery: options.snapshotEvery,
      ...(options.maxUncommittedBytes !== undefined ? { maxUncommittedBytes: options.maxUncommittedBytes } : {}),
      ...(options.snapshotLogRatio !== undefined ? { snapshotLogRatio: options.snapshotLogRatio } : {}),
      ...(options.snapshotRatioMinBytes !== undefined ? { snapshotRatioMinBytes: options.snapshotRatioMinBytes } : {}),
      logger: options.logger,
    });
  }

  /** Recovers the member from its data dir (the state machine sees every entry committed before) and starts it. */
  async start(): Promise<void> {
    await this.group.start();
    this.running = true;
    this.seedTimer = setInterval(() => void this.seedOrCheck(), this.options.tickMs);
    this.seedTimer.unref();
    void this.seedOrCheck();
  }

  /** Before a graceful stop: a meta leader hands over to its most up-to-date follower (see ConsensusGroup.handOffLeadership). */
  async handOffLeadership(): Promise<void> {
    if (this.running) await this.group.handOffLeadership();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.seedTimer);
    await this.group.stop();
  }

  /** The ring and shard-group directory this member has applied; undefined until bootstrapped. */
  get directory(): DirectoryState | undefined {
    return this.stateMachine.directory;
  }

  leader(): MetaLeader {
    if (!this.running) return { kind: 'unknown' };
    const status = this.group.status();
    if (status.role === 'leader') return { kind: 'self' };
    if (status.leaderId !== undefined && status.leaderId !== '' && status.leaderAddress !== undefined && status.leaderAddress !== '') {
      return { kind: 'remote', memberId: status.leaderId, address: status.leaderAddress };
    }
    return { kind: 'unknown' };
  }

  /** This member's consensus status; undefined before start and after stop. */
  status(): ConsensusStatus | undefined {
    return this.running ? this.group.status() : undefined;
  }

  /** Once `ready`, the local state reflects every entry committed before the call (leader only). */
  readBarrier(): Promise<ReadBarrierOutcome> {
    return this.group.readBarrier();
  }

  propose(command: MetaCommand): Promise<ProposeOutcome<MetaResult>> {
    return this.group.propose(encodeMetaCommand(command));
  }

  /**
   * One step of the meta group's own membership (leader only; see meta-membership.ts). The driver
   * notes an added member's address in the log, so every coordinator can reach it.
   */
  changeMembership(change: MembershipChange): Promise<MembershipOutcome> {
    if (!this.running) return Promise.resolve({ kind: 'rejected', reason: 'this coordinator\'s meta member is not running' });
    return this.group.changeMembership(change);
  }

  /** Hands the meta group's leadership to the voter `memberId` (leader only; see leadership.ts). */
  transferLeadership(memberId: string): Promise<TransferOutcome> {
    if (!this.running) return Promise.resolve({ kind: 'rejected', reason: 'this coordinator\'s meta member is not running' });
    return this.group.transferLeadership(memberId);
  }

  private async seedOrCheck(): Promise<void> {
    if (!this.running || this.seeding) return;
    const { seed } = this.options;
    const directory = this.stateMachine.directory;
    if (directory !== undefined) {
      clearInterval(this.seedTimer);
      if (seed !== undefined && !sameSeed(seed, seedOf(directory))) {
        this.logger.warn(
          { flags: describeSeed(seed), replicated: describeSeed(seedOf(directory)) },
          'the --groups/--ring-epoch/--ring-vnodes settings differ from the ring the meta group holds; serving the replicated ring (the settings only seed an empty meta group)',
        );
      }
      return;
    }
    if (seed === undefined || this.seedRefused || this.group.status().role !== 'leader') return;
    this.seeding = true;
    try {
      const barrier = await this.group.readBarrier();
      if (barrier.kind !== 'ready' || this.stateMachine.directory !== undefined) return;
      const outcome = await this.propose({ type: 'bootstrap', ringEpoch: seed.ringEpoch, vnodes: seed.vnodes, groups: [...seed.groups] });
      if (outcome.kind !== 'applied') {
        // Lost leadership or timed out: whoever leads next seeds (this member too, on a later tick).
        this.logger.debug({ outcome }, 'bootstrap of the meta group not applied; retrying while the group is empty');
        return;
      }
      const { result } = outcome;
      if (result.kind === 'rejected') {
        this.seedRefused = true;
        this.logger.error({ reason: result.reason }, 'bootstrap of the meta group refused');
      } else this.logger.info({ ring: describeSeed(seed), index: outcome.index }, 'bootstrapped the meta group from the settings');
    } catch (error) {
      this.logger.error({ err: error }, 'bootstrapping the meta group failed');
    } finally {
      this.seeding = false;
    }
  }
}
