// concord.v1.Cluster: the ring clients route with, and the health of every group, gathered by
// asking every shard replica and every other coordinator for its own view.

import { Metadata, credentials, status as grpcStatus, type ChannelCredentials, type ServiceError as GrpcServiceError } from '@grpc/grpc-js';
import { CHANNEL_OPTIONS } from '@concord/client';
import { MemberRole, memberRoleFromJSON, type ClusterServer, type GroupStatus, type MemberStatus } from '@concord/proto/cluster';
import { ShardClient, type ShardStatusResponse } from '@concord/proto/shard';
import { ServiceError, unary } from '@concord/runtime';
import type { ProposeOutcome } from '@concord/consensus';
import type { ShardDirectory } from './directory.js';
import type { MetaCommand, MetaResult } from './meta/commands.js';
import { changeShardMembership } from './shard-membership.js';
import { transferLeadership, type MetaLeadershipSource } from './leadership.js';
import { META_GROUP_ID } from './meta/meta-group.js';
import { changeMetaMembership, type MetaMembershipSource } from './meta/meta-membership.js';
import { MetaStatusReporter, isMemberProbe, type MetaStatusSource } from './meta-status.js';

/**
 * How long Status waits for each replica. Short: a status page is most needed when something is
 * down, and one dead replica must not hold up the report on the others.
 */
export const STATUS_PROBE_TIMEOUT_MS = 1000;

/** What the one member of a config-engine coordinator's "meta group" reports: it is the whole group. */
const CONFIG_ENGINE = 'config';

export interface ClusterServiceOptions {
  directory: ShardDirectory;
  /** host:port of the coordinator itself (known once its server is bound). */
  selfAddress: () => string;
  memberId: string;
  /** The leader the coordinator's router learned most recently, if any. */
  knownLeader: (groupId: string) => string | undefined;
  /** Default STATUS_PROBE_TIMEOUT_MS. */
  probeTimeoutMs?: number;
  /** The meta group (raft engine). Without it this coordinator reports itself as the whole meta group (config engine). */
  meta?: MetaStatusSource;
  /**
   * Run before GetRing reads the directory, so the ring a client gets is at least as new as every
   * change acknowledged before it asked (the meta leader's read barrier). None with the config engine.
   */
  readBarrier?: () => Promise<void>;
  /** Proposes to the meta group (ChangeShardMembership records addresses with it). None with the config engine. */
  proposeMeta?: (command: MetaCommand) => Promise<ProposeOutcome<MetaResult>>;
  /** Changes the meta group's own membership (ChangeShardMembership with group_id "meta"). None with the config engine. */
  metaMembership?: MetaMembershipSource & MetaLeadershipSource;
  /** Credentials of the channels to shard replicas and other coordinators (mutual TLS with --tls-*); default plaintext. */
  credentials?: ChannelCredentials;
}

/** The outcome of one Status probe. */
type Probe = { address: string; response: ShardStatusResponse } | { address: string; error: string };

/** Asks shard replicas for their status over channels kept for the coordinator's lifetime. */
export class StatusProber {
  private readonly channels = new Map<string, ShardClient>();

  constructor(
    private readonly timeoutMs: number,
    private readonly channelCredentials: ChannelCredentials = credentials.createInsecure(),
  ) {}

  probe(address: string): Promise<Probe> {
    let channel = this.channels.get(address);
    if (channel === undefined) {
      channel = new ShardClient(address, this.channelCredentials, CHANNEL_OPTIONS);
      this.channels.set(address, channel);
    }
    const client = channel;
    return new Promise((resolve) => {
      client.status({}, new Metadata(), { deadline: new Date(Date.now() + this.timeoutMs) }, (error: GrpcServiceError | null, response) => {
        if (error === null) resolve({ address, response });
        else resolve({ address, error: `${grpcStatus[error.code] ?? error.code}: ${error.details}` });
      });
    });
  }

  close(): void {
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }
}

/** "LEADER" as a shard reports it → MEMBER_ROLE_LEADER; anything unknown is UNSPECIFIED. */
export function memberRoleOf(role: string): MemberRole {
  const parsed = memberRoleFromJSON(`MEMBER_ROLE_${role}`);
  return parsed === MemberRole.UNRECOGNIZED ? MemberRole.MEMBER_ROLE_UNSPECIFIED : parsed;
}

/**
 * One group's status from its replicas' answers. The leader is the member that says it leads;
 * during a partition an old leader may still say so, and the one with the highest term wins.
 */
export function groupStatus(groupId: string, probes: readonly Probe[], ringShare: number): GroupStatus {
  const members: MemberStatus[] = [];
  let leader: ShardStatusResponse | undefined;
  for (const probe of probes) {
    if ('error' in probe) {
      members.push({
        memberId: '',
        address: probe.address,
        role: MemberRole.MEMBER_ROLE_UNREACHABLE,
        term: 0,
        commitIndex: 0,
        appliedIndex: 0,
        engine: '',
        error: probe.error,
      });
      continue;
    }
    const { response } = probe;
    const role = memberRoleOf(response.role);
    // A replica configured under the wrong group would serve the wrong keys: say so.
    const misplaced = response.groupId !== groupId ? `replica reports group ${JSON.stringify(response.groupId)}, configured in ${groupId}` : '';
    members.push({
      memberId: response.memberId,
      address: probe.address,
      role,
      term: response.term,
      commitIndex: response.commitIndex,
      appliedIndex: response.appliedIndex,
      engine: response.engine,
      error: misplaced,
    });
    if (role === MemberRole.MEMBER_ROLE_LEADER && misplaced === '' && (leader === undefined || response.term > leader.term)) leader = response;
  }
  return { groupId, members, leaderId: leader?.memberId ?? '', keyCount: leader?.keyCount ?? 0, ringShare };
}

export function createClusterService(options: ClusterServiceOptions): { implementation: ClusterServer; close(): void } {
  const { directory } = options;
  const probeTimeoutMs = options.probeTimeoutMs ?? STATUS_PROBE_TIMEOUT_MS;
  const prober = new StatusProber(probeTimeoutMs, options.credentials);
  const metaReporter =
    options.meta === undefined ? undefined : new MetaStatusReporter(options.meta, options.memberId, options.selfAddress, probeTimeoutMs, options.credentials);

  const shardGroups = async (): Promise<GroupStatus[]> => {
    const state = directory.current();
    if (state === undefined) return [];
    const shares = state.ring.shares();
    return Promise.all(
      state.groups.map(async (group) => {
        const probes = await Promise.all(group.addresses.map((address) => prober.probe(address)));
        const status = groupStatus(group.groupId, probes, shares.get(group.groupId) ?? 0);
        const leader = status.members.find((member) => member.memberId === status.leaderId && status.leaderId !== '');
        // What the replicas said about their leader also serves GetRing, so direct clients
        // start at the leader.
        if (leader !== undefined) directory.noteLeader(group.groupId, leader.address);
        return status;
      }),
    );
  };

  const configMeta = (): GroupStatus => ({
    groupId: META_GROUP_ID,
    members: [
      {
        memberId: options.memberId,
        address: options.selfAddress(),
        role: MemberRole.MEMBER_ROLE_LEADER,
        term: 0,
        commitIndex: 0,
        appliedIndex: 0,
        engine: CONFIG_ENGINE,
        error: '',
      },
    ],
    leaderId: options.memberId,
    keyCount: 0,
    ringShare: 0,
  });

  const implementation: ClusterServer = {
    getRing: unary(async () => {
      await options.readBarrier?.();
      return directory.ringResponse(options.knownLeader);
    }),
    status: unary(async (_request, call) => {
      const ringEpoch = (): number => directory.current()?.ring.epoch ?? 0;
      if (metaReporter === undefined) return { ringEpoch: ringEpoch(), meta: configMeta(), groups: await shardGroups() };
      // The internal probe of this one member (see meta-status.ts): its own entry, nothing else.
      if (isMemberProbe(call.metadata)) return { ringEpoch: ringEpoch(), meta: metaReporter.self(), groups: [] };
      const [meta, groups] = await Promise.all([metaReporter.group(), shardGroups()]);
      return { ringEpoch: ringEpoch(), meta, groups };
    }),
    changeShardMembership: unary(async (request, call) => {
      // The coordinators' own group: the same three steps, carried out by the meta leader itself.
      if (request.groupId === META_GROUP_ID) {
        if (options.metaMembership === undefined) {
          throw new ServiceError(
            grpcStatus.FAILED_PRECONDITION,
            'group_id: this coordinator runs --engine config, alone, without a meta group whose membership could change; use --engine raft',
          );
        }
        return changeMetaMembership(options.metaMembership, request, call.getDeadline());
      }
      return changeShardMembership(
        {
          directory,
          knownLeader: options.knownLeader,
          ...(options.proposeMeta !== undefined ? { proposeMeta: options.proposeMeta } : {}),
          ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
        },
        request,
        call.getDeadline(),
      );
    }),
    transferLeadership: unary(async (request, call) =>
      transferLeadership(
        {
          directory,
          knownLeader: options.knownLeader,
          ...(options.metaMembership !== undefined ? { meta: options.metaMembership } : {}),
          ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
        },
        request,
        call.getDeadline(),
      ),
    ),
  };
  return {
    implementation,
    close: () => {
      prober.close();
      metaReporter?.close();
    },
  };
}
