// How a membership change and a membership read in the answers and refusals of every group that
// changes its members one step at a time (a shard group, the coordinators' meta group), so an
// operator sees the same words whichever group they changed.

import type { MemberInfo, MembershipChange } from './types.js';

/** The change as the rest of a sentence: "refused to add g1-3 (127.0.0.1:7110) as a learner". */
export function describeMembershipChange(change: MembershipChange): string {
  switch (change.kind) {
    case 'add_learner':
      return `add ${change.memberId} (${change.address}) as a learner`;
    case 'promote':
      return `promote ${change.memberId}`;
    case 'remove':
      return `remove ${change.memberId}`;
  }
}

/** Voters first, then learners, each by member id: the order a membership is answered in. */
export function sortMembers(members: readonly MemberInfo[]): MemberInfo[] {
  return [...members].sort((a, b) => Number(b.voter) - Number(a.voter) || a.memberId.localeCompare(b.memberId));
}
