// Renders Cluster.Status as the operator's table: one row per member, grouped by consensus group.
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
    i === 0 && withData ? `${(group.ringShare * 100).toFixed(1)}%` : '',
  ]);
}

export function formatStatusTable(status: StatusResponse): string {
  const table = new Table({
    head: ['GROUP', 'MEMBER', 'ADDRESS', 'ROLE', 'ENGINE', 'TERM', 'COMMIT', 'APPLIED', 'LAG', 'KEYS', 'RING'],
    style: { head: [], border: [] },
  });
  const groups = [...(status.meta ? [{ label: 'meta', group: status.meta, withData: false }] : []), ...status.groups.map((group) => ({ label: `shard ${group.groupId}`, group, withData: true }))];
  for (const { label, group, withData } of groups) table.push(...groupRows(label, group, withData));
  const totalKeys = status.groups.reduce((sum, g) => sum + g.keyCount, 0);
  const shortened = groups.some(({ group }) =>
    group.members.some((member) => member.role === MemberRole.MEMBER_ROLE_UNREACHABLE && shortenError(member.error) !== member.error.trim()),
  );
  const note = shortened ? 'Errors are shortened; `concord status --json` shows them in full.\n' : '';
  return `ring epoch ${status.ringEpoch} · ${status.groups.length} shard groups · ${totalKeys} keys\n${table.toString()}\n${note}`;
}
