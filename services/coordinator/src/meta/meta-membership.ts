// The meta group's own membership, changed one step at a time like a shard group's:
// Cluster.ChangeShardMembership with group_id "meta" (META_GROUP_ID) adds a coordinator as a
// learner, promotes it once it has caught up, or removes one. The call runs on the meta leader
// (followers forward Cluster calls to it) and is the driver's changeMembership() there.
//
// One call for every consensus group of the cluster, as etcd has one MemberAdd / MemberPromote /
// MemberRemove for its own members: Cluster.Status already reports the coordinators as the group
// "meta", so `concord member add meta coordinator-3 host:port` reads like the shard commands.
//
// ADDRESSES. The driver writes the new member's address into the meta log just before the change
// (entry-envelope.ts), so every coordinator, the new one included, learns where it listens from the
// log (or from a snapshot, which carries the addresses too): a follower forwards to it once it
// leads, and Cluster.Status probes it. The meta state machine itself holds no coordinator address.

import { status as grpcStatus } from '@grpc/grpc-js';
import { METADATA_LEADER, METADATA_REASON, REASON_NOT_LEADER } from '@concord/client';
import { describeMembershipChange, sortMembers, type ConsensusStatus, type LeaderHint, type MemberInfo, type MembershipChange, type MembershipOutcome } from '@concord/consensus';
import type { ChangeShardMembershipRequest, ChangeShardMembershipResponse } from '@concord/proto/cluster';
import { MembershipChangeKind } from '@concord/proto/shard';
import { ID_DOC, ID_PATTERN, ServiceError } from '@concord/runtime';
import { addressProblem } from '../addresses.js';
import type { DirectoryState } from './directory-state.js';

/** How long one step may take when the caller set no sooner deadline (as for a shard group's). */
export const META_MEMBERSHIP_TIMEOUT_MS = 15_000;

/** What a meta membership step needs of this coordinator's meta member (MetaGroup). */
export interface MetaMembershipSource {
  changeMembership(change: MembershipChange): Promise<MembershipOutcome>;
  /** Undefined while the member is not running. */
  status(): ConsensusStatus | undefined;
  /** The shard directory, so a coordinator is not added on a shard replica's address. */
  readonly directory: DirectoryState | undefined;
}

/**
 * Checks the request's fields (INVALID_ARGUMENT naming the field) and converts it. The same rules
 * as a shard group's step: ids as --member-id takes them, an address only with ADD_LEARNER.
 */
export function metaMembershipChangeOf(request: ChangeShardMembershipRequest): MembershipChange {
  const invalid = (message: string): never => {
    throw new ServiceError(grpcStatus.INVALID_ARGUMENT, message);
  };
  const kind = request.kind;
  if (
    kind !== MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_ADD_LEARNER &&
    kind !== MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_PROMOTE &&
    kind !== MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_REMOVE
  ) {
    return invalid(`kind: must be ADD_LEARNER, PROMOTE or REMOVE (got ${String(kind)})`);
  }
  if (!ID_PATTERN.test(request.memberId)) invalid(`member_id: must be ${ID_DOC} (got ${JSON.stringify(request.memberId)})`);
  if (kind === MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_ADD_LEARNER) {
    const problem = addressProblem(request.address);
    if (problem !== undefined) {
      invalid(`address: ADD_LEARNER needs the new coordinator's host:port, its --listen address, e.g. 127.0.0.1:7073 (got ${JSON.stringify(request.address)})`);
    }
    return { kind: 'add_learner', memberId: request.memberId, address: request.address };
  }
  if (request.address !== '') invalid(`address: only ADD_LEARNER takes an address (got ${JSON.stringify(request.address)})`);
  return { kind: kind === MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_PROMOTE ? 'promote' : 'remove', memberId: request.memberId };
}

/** One membership step of the meta group, on this coordinator, which should lead it. */
export async function changeMetaMembership(
  source: MetaMembershipSource,
  request: ChangeShardMembershipRequest,
  callDeadline: Date | number | undefined,
): Promise<ChangeShardMembershipResponse> {
  const change = metaMembershipChangeOf(request);
  if (change.kind === 'add_learner') checkAddition(source, change);
  const deadline = Math.min(Date.now() + META_MEMBERSHIP_TIMEOUT_MS, deadlineMs(callDeadline));
  const outcome = await withDeadline(source.changeMembership(change), deadline);
  if (outcome === undefined) {
    // The driver resolves a change once it applies; without a majority it never does.
    throw new ServiceError(
      grpcStatus.UNAVAILABLE,
      `the meta group did not apply the change to ${describeMembershipChange(change)} before the deadline (is a majority of its voters running?); ` +
        'it may still apply: check concord status before repeating it',
    );
  }
  switch (outcome.kind) {
    case 'applied':
      return { members: sortedMembers(outcome.members) };
    case 'not_leader':
      throw metaNotLeader(outcome);
    case 'rejected':
      throw new ServiceError(grpcStatus.FAILED_PRECONDITION, `the meta group refused to ${describeMembershipChange(change)}: ${outcome.reason}; ${adviceFor(change)}`);
  }
}

/** UNAVAILABLE with `concord-reason: NOT_LEADER` (and `concord-leader` when known): a meta-group request reached a coordinator that does not lead it. */
export function metaNotLeader(hint: LeaderHint): ServiceError {
  const leader = hint.leaderAddress ?? '';
  return new ServiceError(
    grpcStatus.UNAVAILABLE,
    `this coordinator does not lead the meta group${hint.leaderId !== undefined && hint.leaderId !== '' ? ` (the leader is ${hint.leaderId})` : ''}; nothing was done, retry`,
    leader === '' ? { [METADATA_REASON]: REASON_NOT_LEADER } : { [METADATA_REASON]: REASON_NOT_LEADER, [METADATA_LEADER]: leader },
  );
}

/**
 * Checked on the leader against the membership it holds now, before the driver is asked:
 * - the id must be new. The driver notes the address in the log before it proposes the change, and
 *   the core refuses to add a member twice only after that, so adding a current member under a
 *   wrong address would leave the note behind and send that member's messages there;
 * - the address must be the new coordinator's own: one a current member still has (say the dead
 *   coordinator it replaces, on the same host and port) would receive that member's messages too,
 *   and one a shard replica serves on would receive the meta group's messages.
 */
function checkAddition(source: MetaMembershipSource, change: Extract<MembershipChange, { kind: 'add_learner' }>): void {
  const { memberId, address } = change;
  const members = source.status()?.members ?? [];
  if (members.some((member) => member.memberId === memberId)) {
    throw new ServiceError(
      grpcStatus.FAILED_PRECONDITION,
      `the meta group refused to ${describeMembershipChange(change)}: ${memberId} is already a member; ${adviceFor(change)}`,
    );
  }
  const owner = members.find((member) => member.address === address);
  if (owner !== undefined) {
    throw new ServiceError(
      grpcStatus.FAILED_PRECONDITION,
      `address: ${address} is the address of meta member ${owner.memberId}; remove ${owner.memberId} first (concord member remove meta ${owner.memberId}), or give the new coordinator another address`,
    );
  }
  const group = source.directory?.groups.find((entry) => entry.addresses.includes(address));
  if (group !== undefined) {
    throw new ServiceError(grpcStatus.FAILED_PRECONDITION, `address: ${address} is a replica of shard group ${group.groupId}; a coordinator needs an address of its own`);
  }
}

/** Voters first, then learners, each by member id (as a shard group answers). */
function sortedMembers(members: readonly MemberInfo[]): ChangeShardMembershipResponse['members'] {
  return sortMembers(members).map((member) => ({ memberId: member.memberId, address: member.address, voter: member.voter }));
}

function adviceFor(change: MembershipChange): string {
  switch (change.kind) {
    case 'add_learner':
      return 'wait for a pending change to apply and retry, or check that the coordinator is not already a member (concord status)';
    case 'promote':
      return "a learner is promoted once it has caught up with the leader's log and no other change is pending: wait and retry";
    case 'remove':
      return 'wait for a pending change to apply and retry, or check the member id against concord status';
  }
}

function deadlineMs(deadline: Date | number | undefined): number {
  if (deadline === undefined) return Number.POSITIVE_INFINITY;
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : Number.POSITIVE_INFINITY;
}

/** The promise's value, or undefined once `deadline` (epoch ms) passes first. */
export async function withDeadline<T>(work: Promise<T>, deadline: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()));
    timer.unref();
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}
