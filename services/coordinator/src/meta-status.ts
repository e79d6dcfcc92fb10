// The meta group's part of Cluster.Status: this coordinator's own consensus status, and every
// other member's as that member reports it. The other members are asked with Cluster.Status
// itself, marked as a member probe (METADATA_STATUS_SCOPE): a probed coordinator answers with
// its own entry only, never forwards the probe, and probes nothing further, so a probe costs one
// hop and cannot recurse.

import { Metadata, credentials, status as grpcStatus, type ChannelCredentials, type ServiceError as GrpcServiceError } from '@grpc/grpc-js';
import { CHANNEL_OPTIONS } from '@concord/client';
import type { ConsensusStatus } from '@concord/consensus';
import { ClusterClient, MemberRole, type GroupStatus, type MemberStatus, type StatusResponse } from '@concord/proto/cluster';
import { META_GROUP_ID } from './meta/meta-group.js';

/** Request metadata of the internal probe of one coordinator; the value is METADATA_STATUS_SCOPE_MEMBER. */
export const METADATA_STATUS_SCOPE = 'concord-status-scope';
export const STATUS_SCOPE_MEMBER = 'member';

/** Whether a Status call is the internal probe of one coordinator. */
export function isMemberProbe(metadata: Metadata): boolean {
  return metadata.get(METADATA_STATUS_SCOPE)[0] === STATUS_SCOPE_MEMBER;
}

/** What this status needs of the meta group (MetaGroup, or a fake in tests). */
export interface MetaStatusSource {
  /** Undefined while the member is not running (recovering its log, or stopped). */
  status(): ConsensusStatus | undefined;
}

const ROLE: Record<ConsensusStatus['role'], MemberRole> = {
  leader: MemberRole.MEMBER_ROLE_LEADER,
  follower: MemberRole.MEMBER_ROLE_FOLLOWER,
  candidate: MemberRole.MEMBER_ROLE_CANDIDATE,
  learner: MemberRole.MEMBER_ROLE_LEARNER,
};

/** This coordinator's entry in the meta group's status. */
export function selfMemberStatus(status: ConsensusStatus | undefined, memberId: string, address: string): MemberStatus {
  if (status === undefined) {
    return {
      memberId,
      address,
      role: MemberRole.MEMBER_ROLE_UNSPECIFIED,
      term: 0,
      commitIndex: 0,
      appliedIndex: 0,
      engine: 'raft',
      error: 'not running: recovering its meta log, or shutting down',
    };
  }
  return {
    memberId,
    address,
    role: ROLE[status.role],
    term: status.term,
    commitIndex: status.commitIndex,
    appliedIndex: status.appliedIndex,
    engine: status.engine,
    // Not in the membership it holds: started with --join and not added yet, or removed.
    error: status.members.some((member) => member.memberId === memberId) ? '' : 'not a member of the meta group (not added yet, or removed)',
  };
}

/** Asks the other coordinators for their own entries, over channels kept for the coordinator's lifetime. */
export class MetaStatusReporter {
  private readonly channels = new Map<string, ClusterClient>();

  constructor(
    private readonly source: MetaStatusSource,
    private readonly memberId: string,
    private readonly selfAddress: () => string,
    private readonly probeTimeoutMs: number,
    /** Credentials of the channels to the other coordinators (mutual TLS with --tls-*). */
    private readonly channelCredentials: ChannelCredentials = credentials.createInsecure(),
  ) {}

  /** Only this member: what a member probe answers. */
  self(): GroupStatus {
    const status = this.source.status();
    return { groupId: META_GROUP_ID, members: [selfMemberStatus(status, this.memberId, this.selfAddress())], leaderId: status?.leaderId ?? '', keyCount: 0, ringShare: 0 };
  }

  /**
   * Every member of the meta group, in the group's member order: this one from its own status,
   * the others as they answer a member probe (UNREACHABLE, with the reason, when they do not).
   * The leader is the one this member follows.
   */
  async group(): Promise<GroupStatus> {
    const status = this.source.status();
    const self = selfMemberStatus(status, this.memberId, this.selfAddress());
    if (status === undefined) return { groupId: META_GROUP_ID, members: [self], leaderId: '', keyCount: 0, ringShare: 0 };
    const members = await Promise.all(
      status.members.map((member) => (member.memberId === this.memberId ? self : this.probe(member.memberId, member.address))),
    );
    // A coordinator that is not (or not yet) a member, e.g. one started with --join before the
    // leader added it, answers for itself too: the status names it, with the role it has.
    if (!status.members.some((member) => member.memberId === this.memberId)) members.push(self);
    return { groupId: META_GROUP_ID, members, leaderId: status.leaderId ?? '', keyCount: 0, ringShare: 0 };
  }

  close(): void {
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }

  private probe(memberId: string, address: string): Promise<MemberStatus> {
    const unreachable = (error: string): MemberStatus => ({
      memberId,
      address,
      role: MemberRole.MEMBER_ROLE_UNREACHABLE,
      term: 0,
      commitIndex: 0,
      appliedIndex: 0,
      engine: '',
      error,
    });
    if (address === '') return Promise.resolve(unreachable('no address known for this member'));
    let client = this.channels.get(address);
    if (client === undefined) {
      client = new ClusterClient(address, this.channelCredentials, CHANNEL_OPTIONS);
      this.channels.set(address, client);
    }
    const metadata = new Metadata();
    metadata.set(METADATA_STATUS_SCOPE, STATUS_SCOPE_MEMBER);
    return new Promise((resolve) => {
      client.status({}, metadata, { deadline: new Date(Date.now() + this.probeTimeoutMs) }, (error: GrpcServiceError | null, response: StatusResponse) => {
        if (error !== null) return resolve(unreachable(`${grpcStatus[error.code] ?? error.code}: ${error.details}`));
        const entry = response.meta?.members[0];
        if (entry === undefined) return resolve(unreachable('answered without a meta member'));
        // Another coordinator answering on this address: its progress says nothing about this member.
        if (entry.memberId !== memberId) return resolve(unreachable(`the coordinator at ${address} answers as ${entry.memberId}`));
        resolve({ ...entry, address });
      });
    });
  }
}
