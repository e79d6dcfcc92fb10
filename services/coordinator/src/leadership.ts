// Cluster.TransferLeadership (`concord member move-leader`): hands the leadership of a shard group
// to one of its voters, through the group's leader (Shard.TransferLeadership, following NOT_LEADER
// hints), or that of the coordinators' meta group, on the meta leader itself. Nothing is recorded
// in the meta group: the members and their addresses do not change, and routers follow the new
// leader's NOT_LEADER hints as after any election.

import { Metadata, status as grpcStatus } from '@grpc/grpc-js';
import type { TransferOutcome } from '@concord/consensus';
import type { TransferLeadershipRequest, TransferLeadershipResponse } from '@concord/proto/cluster';
import type { ShardTransferLeadershipResponse } from '@concord/proto/shard';
import { ID_DOC, ID_PATTERN, ServiceError } from '@concord/runtime';
import { META_GROUP_ID } from './meta/meta-group.js';
import { metaNotLeader, withDeadline } from './meta/meta-membership.js';
import { deadlineMs, onGroupLeader, type ShardMembershipOptions } from './shard-membership.js';

/**
 * How long a transfer may take when the caller set no sooner deadline: the target catches up and
 * wins an election within an election timeout or the leader gives up, so this only bounds a hang.
 */
export const TRANSFER_LEADERSHIP_TIMEOUT_MS = 15_000;

/** What a transfer of the meta group needs of this coordinator's meta member (MetaGroup). */
export interface MetaLeadershipSource {
  transferLeadership(memberId: string): Promise<TransferOutcome>;
}

export async function transferLeadership(
  options: Pick<ShardMembershipOptions, 'directory' | 'knownLeader' | 'credentials'> & { meta?: MetaLeadershipSource },
  request: TransferLeadershipRequest,
  callDeadline: Date | number | undefined,
): Promise<TransferLeadershipResponse> {
  if (!ID_PATTERN.test(request.memberId)) {
    throw new ServiceError(grpcStatus.INVALID_ARGUMENT, `member_id: must be ${ID_DOC} (got ${JSON.stringify(request.memberId)})`);
  }
  const deadline = Math.min(Date.now() + TRANSFER_LEADERSHIP_TIMEOUT_MS, deadlineMs(callDeadline));
  if (request.groupId === META_GROUP_ID) {
    if (options.meta === undefined) {
      throw new ServiceError(
        grpcStatus.FAILED_PRECONDITION,
        'group_id: this coordinator runs --engine config, alone, without a meta group whose leadership could move; use --engine raft',
      );
    }
    const outcome = await withDeadline(options.meta.transferLeadership(request.memberId), deadline);
    if (outcome === undefined) {
      throw new ServiceError(
        grpcStatus.UNAVAILABLE,
        `the meta group did not hand its leadership to ${request.memberId} before the deadline; check concord status, then retry`,
      );
    }
    return metaOutcome(request.memberId, outcome);
  }
  const state = options.directory.current();
  if (state === undefined) throw new ServiceError(grpcStatus.UNAVAILABLE, 'the meta group holds no ring yet; retry');
  const group = state.groups.find((entry) => entry.groupId === request.groupId);
  if (group === undefined) {
    const known = [META_GROUP_ID, ...state.groups.map((entry) => entry.groupId)].join(', ');
    throw new ServiceError(grpcStatus.INVALID_ARGUMENT, `group_id: no group ${JSON.stringify(request.groupId)} (groups: ${known})`);
  }
  return onGroupLeader<ShardTransferLeadershipResponse>(options, request.groupId, [...group.addresses], deadline, 'the transfer', (client, at, done) =>
    client.transferLeadership({ memberId: request.memberId }, new Metadata(), { deadline: at }, done),
  );
}

/** The meta group's outcome as the shard service words a shard group's (Shard.TransferLeadership). */
function metaOutcome(memberId: string, outcome: TransferOutcome): TransferLeadershipResponse {
  switch (outcome.kind) {
    case 'transferred':
      return { leaderId: outcome.leaderId, term: outcome.term };
    case 'not_leader':
      throw metaNotLeader(outcome);
    case 'rejected':
      throw new ServiceError(grpcStatus.FAILED_PRECONDITION, `the meta group refused to hand its leadership to ${memberId}: ${outcome.reason}`);
    case 'failed':
      throw new ServiceError(grpcStatus.UNAVAILABLE, `the meta group did not hand its leadership to ${memberId}: ${outcome.reason}; check concord status, then retry`);
  }
}
