// Cluster.ChangeShardMembership: one membership step of a shard group, on the meta leader. It finds
// the group's leader (following NOT_LEADER hints), has it apply the step with Shard.ChangeMembership,
// then records the group's new member addresses in the meta group (set_group_addresses), so that
// GetRing, Status and every router reach the new member and stop dialling a removed one.

import { Metadata, credentials, status as grpcStatus, type ChannelCredentials, type ServiceError as GrpcServiceError } from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, METADATA_LEADER, METADATA_REASON, REASON_NOT_LEADER } from '@concord/client';
import type { ProposeOutcome } from '@concord/consensus';
import type { ChangeShardMembershipRequest, ChangeShardMembershipResponse } from '@concord/proto/cluster';
import { MembershipChangeKind, ShardClient, type ShardChangeMembershipResponse } from '@concord/proto/shard';
import { ServiceError } from '@concord/runtime';
import type { ShardDirectory } from './directory.js';
import type { MetaCommand, MetaResult } from './meta/commands.js';

/** How long one membership step may take when the caller set no sooner deadline. */
export const MEMBERSHIP_CHANGE_TIMEOUT_MS = 15_000;

/** Replicas asked per step: each address of the group, plus the leaders they name. */
const MAX_ATTEMPTS = 8;

export interface ShardMembershipOptions {
  directory: ShardDirectory;
  /** The leader the coordinator's router learned most recently, if any. */
  knownLeader: (groupId: string) => string | undefined;
  /** Proposes to the meta group; undefined with the config engine, whose ring comes from flags. */
  proposeMeta?: (command: MetaCommand) => Promise<ProposeOutcome<MetaResult>>;
  /** Credentials of the channels to the group's replicas (mutual TLS with --tls-*); default plaintext. */
  credentials?: ChannelCredentials;
}

const KIND_NAMES: Record<number, string> = {
  [MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_ADD_LEARNER]: 'ADD_LEARNER',
  [MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_PROMOTE]: 'PROMOTE',
  [MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_REMOVE]: 'REMOVE',
};

export async function changeShardMembership(
  options: ShardMembershipOptions,
  request: ChangeShardMembershipRequest,
  callDeadline: Date | number | undefined,
): Promise<ChangeShardMembershipResponse> {
  if (options.proposeMeta === undefined) {
    throw new ServiceError(
      grpcStatus.FAILED_PRECONDITION,
      'this coordinator runs --engine config: its shard directory comes from --groups, so membership changes cannot be recorded; use --engine raft',
    );
  }
  if (KIND_NAMES[request.kind] === undefined) {
    throw new ServiceError(grpcStatus.INVALID_ARGUMENT, `kind: must be ADD_LEARNER, PROMOTE or REMOVE (got ${String(request.kind)})`);
  }
  const state = options.directory.current();
  if (state === undefined) throw new ServiceError(grpcStatus.UNAVAILABLE, 'the meta group holds no ring yet; retry');
  const group = state.groups.find((entry) => entry.groupId === request.groupId);
  if (group === undefined) {
    const known = state.groups.map((entry) => entry.groupId).join(', ');
    throw new ServiceError(grpcStatus.INVALID_ARGUMENT, `group_id: no shard group ${JSON.stringify(request.groupId)} on the ring (groups: ${known})`);
  }
  const deadline = Math.min(Date.now() + MEMBERSHIP_CHANGE_TIMEOUT_MS, deadlineMs(callDeadline));
  const applied = await onGroupLeader<ShardChangeMembershipResponse>(options, request.groupId, [...group.addresses], deadline, 'the change', (client, callDeadline, done) =>
    client.changeMembership({ kind: request.kind, memberId: request.memberId, address: request.address }, new Metadata(), { deadline: callDeadline }, done),
  );
  const addresses = applied.members.map((member) => member.address);
  const outcome = await options.proposeMeta({ type: 'set_group_addresses', groupId: request.groupId, addresses });
  const recorded = `group ${request.groupId} applied the change (members now ${describeMembers(applied)})`;
  switch (outcome.kind) {
    case 'applied':
      if (outcome.result.kind === 'rejected') {
        throw new ServiceError(
          grpcStatus.FAILED_PRECONDITION,
          `${recorded}, but the meta group refused its addresses: ${outcome.result.reason}`,
        );
      }
      return { members: applied.members };
    case 'not_leader':
      throw new ServiceError(
        grpcStatus.UNAVAILABLE,
        `${recorded}, but this coordinator lost the meta leadership before recording the addresses; repeat the last step to record them`,
        { [METADATA_REASON]: REASON_NOT_LEADER },
      );
    case 'dropped':
    case 'unknown':
      throw new ServiceError(
        grpcStatus.UNAVAILABLE,
        `${recorded}, but recording the addresses in the meta group did not complete (${outcome.reason}); check concord status and repeat the last step if needed`,
      );
  }
}

/** One unary call of concord.v1.Shard on `client`, its callback `done`. */
export type ShardCall<Response> = (client: ShardClient, deadline: Date, done: (error: GrpcServiceError | null, response: Response) => void) => unknown;

/**
 * Makes `call` on the group's leader, following NOT_LEADER hints from replica to replica; passes
 * on the leader's own verdict. `what` names the request in the error when no leader answers.
 */
export async function onGroupLeader<Response>(
  options: Pick<ShardMembershipOptions, 'knownLeader' | 'credentials'>,
  groupId: string,
  addresses: string[],
  deadline: number,
  what: string,
  call: ShardCall<Response>,
): Promise<Response> {
  const candidates: string[] = [];
  const known = options.knownLeader(groupId);
  if (known !== undefined && known !== '') candidates.push(known);
  for (const address of addresses) if (!candidates.includes(address)) candidates.push(address);
  const failures: string[] = [];
  for (let attempt = 0; attempt < MAX_ATTEMPTS && candidates.length > 0 && Date.now() < deadline; attempt++) {
    const address = candidates.shift()!;
    const result = await callShard(address, deadline, call, options.credentials);
    if ('response' in result) return result.response;
    const { error } = result;
    const reason = error.metadata?.get(METADATA_REASON)[0];
    if (error.code === grpcStatus.UNAVAILABLE && reason === REASON_NOT_LEADER) {
      const leader = error.metadata.get(METADATA_LEADER)[0];
      if (typeof leader === 'string' && leader !== '' && leader !== address) {
        const index = candidates.indexOf(leader);
        if (index !== -1) candidates.splice(index, 1);
        candidates.unshift(leader);
      }
      failures.push(`${address}: not the leader`);
      continue;
    }
    if (error.code === grpcStatus.UNAVAILABLE || error.code === grpcStatus.DEADLINE_EXCEEDED) {
      failures.push(`${address}: ${grpcStatus[error.code]} ${error.details}`);
      continue;
    }
    // The leader's own verdict (INVALID_ARGUMENT, FAILED_PRECONDITION, ...): pass it on as it is.
    throw new ServiceError(error.code, error.details);
  }
  throw new ServiceError(
    grpcStatus.UNAVAILABLE,
    `no leader of group ${groupId} answered ${what}; check concord status, then retry (${failures.join('; ')})`,
  );
}

function callShard<Response>(
  address: string,
  deadline: number,
  call: ShardCall<Response>,
  channelCredentials: ChannelCredentials = credentials.createInsecure(),
): Promise<{ response: Response } | { error: GrpcServiceError }> {
  const client = new ShardClient(address, channelCredentials, CHANNEL_OPTIONS);
  return new Promise((resolve) => {
    call(client, new Date(deadline), (error, response) => {
      client.close();
      resolve(error === null ? { response } : { error });
    });
  });
}

export function deadlineMs(deadline: Date | number | undefined): number {
  if (deadline === undefined) return Number.POSITIVE_INFINITY;
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : Number.POSITIVE_INFINITY;
}

function describeMembers(response: ShardChangeMembershipResponse): string {
  return response.members.map((member) => `${member.memberId}${member.voter ? '' : ' (learner)'}`).join(', ');
}
