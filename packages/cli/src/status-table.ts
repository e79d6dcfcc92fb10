// Renders Cluster.Status as the operator's view: a summary line (ring epoch, groups, keys, ring
// balance), then one row per member, grouped by consensus group, with each shard group's keys and
// share of the ring.
import Table from 'cli-table3';
import { MemberRole, type GroupStatus, type MemberStatus, type StatusResponse } from '@concord/proto/cluster';

const ROLE_NAMES: Record<number, string> = {
  [MemberRole.MEMBER_ROLE_LEADER]: 'leader',
  [MemberRole.MEMBER_ROLE_FOLLOWER]: 'follower',
  [MemberRole.MEMBER_ROLE_CANDIDATE]: 'candidate',
  [MemberRole.MEMBER_ROLE_LEARNER]: 'learner',
  [MemberRole.MEMBER_ROLE_UNREACHABLE]: 'UNREACHABLE',
};

/**
 * Longest error shown in a row. A gRPC error runs to 150 characters and more ("UNAVAILABLE: No
 * connection established. Last error: Error: connect ECONNREFUSED …. Resolution note: "); printed
 * whole it made the table some 250 columns wide. `concord status --json` has the full text.
 */
export const MAX_ERROR_CHARS = 40;

/** The columns an unreachable member has no values for (ENGINE … LAG); its error goes there instead. */
const ERROR_SPAN = 5;

/**
 * What an operator needs of a member's error, at most `max` characters: the cause grpc-js buried
 * in its message ("connection refused" rather than "No connection established. Last error: …"),
 * cut with "…" when still too long.
 */
export function shortenError(error: string, max = MAX_ERROR_CHARS): string {
  let text = error.trim();
  if (/\bECONNREFUSED\b/.test(text)) text = 'connection refused';
  else if (/^DEADLINE_EXCEEDED\b/.test(text)) text = 'no answer in time (DEADLINE_EXCEEDED)';
  else {
    const lastError = /Last error: (?:Error: )?(.*?)(?:\. Resolution note:.*)?$/.exec(text);
    if (lastError?.[1] !== undefined && lastError[1] !== '') text = lastError[1];
  }
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

type Cell = string | { content: string; colSpan: number };

function memberRow(label: string, member: MemberStatus, maxApplied: number): Cell[] {
  if (member.role === MemberRole.MEMBER_ROLE_UNREACHABLE) {
    return [label, member.memberId, member.address, 'UNREACHABLE', { content: shortenError(member.error), colSpan: ERROR_SPAN }];
  }
  return [
    label,
    member.memberId,
    member.address,
    ROLE_NAMES[member.role] ?? 'unknown',
    member.engine,
    String(member.term),
    String(member.commitIndex),
    String(member.appliedIndex),
    // Lag is measured against the most advanced member of the group, which is what a follower
    // must still apply to catch up.
    String(maxApplied - member.appliedIndex),
  ];
}

function groupRows(label: string, group: GroupStatus, withData: boolean): Cell[][] {
  const maxApplied = Math.max(0, ...group.members.map((m) => m.appliedIndex));
  return group.members.map((member, i) => [
    ...memberRow(i === 0 ? label : '', member, maxApplied),
    i === 0 && withData ? String(group.keyCount) : '',
    i === 0 && withData ? formatShare(group.ringShare) : '',
  ]);
}

/**
 * The share of the ring each shard group owns, as the coordinators report it (`ring_share`: the
 * fraction of the 2^64 tokens between each of the group's virtual nodes and the one before it,
 * computed from the replicated ring, see docs/ring-hash.md), and how even it is.
 */
export interface RingBalance {
  /** Shard groups on the ring. */
  groups: number;
  smallest: { groupId: string; share: number };
  largest: { groupId: string; share: number };
  /**
   * Largest share over the mean share (1 / groups): 1 is a perfectly even ring; 1.10 means the
   * busiest group holds 10% more of the key space than an even split would give it.
   */
  maxOverMean: number;
}

/** undefined when there is no shard group, or the shares are unknown (all 0: no ring yet). */
export function ringBalance(groups: readonly GroupStatus[]): RingBalance | undefined {
  if (groups.length === 0 || groups.every((group) => group.ringShare <= 0)) return undefined;
  let smallest = groups[0]!;
  let largest = groups[0]!;
  for (const group of groups) {
    if (group.ringShare < smallest.ringShare) smallest = group;
    if (group.ringShare > largest.ringShare) largest = group;
  }
  return {
    groups: groups.length,
    smallest: { groupId: smallest.groupId, share: smallest.ringShare },
    largest: { groupId: largest.groupId, share: largest.ringShare },
    maxOverMean: largest.ringShare * groups.length,
  };
}

/** A share of the ring as the RING column prints it: one decimal of a percent. */
export function formatShare(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function summaryLine(status: StatusResponse): string {
  const totalKeys = status.groups.reduce((sum, g) => sum + g.keyCount, 0);
  const parts = [`ring epoch ${status.ringEpoch}`, plural(status.groups.length, 'shard group'), plural(totalKeys, 'key')];
  const balance = ringBalance(status.groups);
  if (balance !== undefined && balance.groups > 1) {
    parts.push(
      `ring balance ${balance.maxOverMean.toFixed(2)} (largest ${balance.largest.groupId} ${formatShare(balance.largest.share)}, ` +
        `smallest ${balance.smallest.groupId} ${formatShare(balance.smallest.share)})`,
    );
  }
  return parts.join(' · ');
}

function groupsTable(status: StatusResponse): { table: string; shortened: boolean } {
  const table = new Table({
    head: ['GROUP', 'MEMBER', 'ADDRESS', 'ROLE', 'ENGINE', 'TERM', 'COMMIT', 'APPLIED', 'LAG', 'KEYS', 'RING'],
    style: { head: [], border: [] },
  });
  const groups = [...(status.meta ? [{ label: 'meta', group: status.meta, withData: false }] : []), ...status.groups.map((group) => ({ label: `shard ${group.groupId}`, group, withData: true }))];
  for (const { label, group, withData } of groups) table.push(...groupRows(label, group, withData));
  const shortened = groups.some(({ group }) =>
    group.members.some((member) => member.role === MemberRole.MEMBER_ROLE_UNREACHABLE && shortenError(member.error) !== member.error.trim()),
  );
  return { table: table.toString(), shortened };
}

/**
 * The whole view, section after section. Cluster.Status reports the consensus groups only today;
 * the worker registry and the running MapReduce jobs are sections of their own, added here once
 * Cluster.Status carries them (the worker role and the jobs do not exist yet).
 */
export function formatStatusTable(status: StatusResponse): string {
  const { table, shortened } = groupsTable(status);
  const note = shortened ? 'Errors are shortened; `concord status --json` shows them in full.\n' : '';
  return `${summaryLine(status)}\n${table}\n${note}`;
}
