// Majority arithmetic over a single configuration of voters (one-server-at-a-time changes never
// need joint consensus, thesis §4.1). Learners never appear here: they neither vote nor count.
import type { NodeId } from './types.js';

/** Votes needed among `voterCount` voters: a strict majority. */
export function quorumSize(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The highest index held by a majority of voters (§5.3): sort the match indexes in descending order
 * and take the quorum-th. With no voters nothing can commit.
 */
export function committedIndex(voters: readonly NodeId[], matchOf: (id: NodeId) => number): number {
  if (voters.length === 0) return 0;
  const matches = voters.map(matchOf).sort((a, b) => b - a);
  return matches[quorumSize(voters.length) - 1] ?? 0;
}

export type VoteResult = 'won' | 'lost' | 'pending';

/** Won once a majority granted; lost once a majority can no longer be reached. Non-voters are ignored. */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const voter of voters) {
    const vote = votes.get(voter);
    if (vote === true) granted++;
    else if (vote === false) rejected++;
  }
  const quorum = quorumSize(voters.length);
  if (granted >= quorum) return 'won';
  if (voters.length - rejected < quorum) return 'lost';
  return 'pending';
}

/** Whether the voters for which `counts` holds form a majority. */
export function hasQuorum(voters: readonly NodeId[], counts: (id: NodeId) => boolean): boolean {
  return voters.filter(counts).length >= quorumSize(voters.length);
}
