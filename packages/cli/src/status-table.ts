// Renders Cluster.Status as the operator's table: one row per member, grouped by consensus group.
import Table from 'cli-table3';
import { MemberRole, type GroupStatus, type StatusResponse } from '@concord/proto/cluster';

const ROLE_NAMES: Record<number, string> = {
  [MemberRole.MEMBER_ROLE_LEADER]: 'leader',
  [MemberRole.MEMBER_ROLE_FOLLOWER]: 'follower',
  [MemberRole.MEMBER_ROLE_CANDIDATE]: 'candidate',
  [MemberRole.MEMBER_ROLE_LEARNER]: 'learner',
  [MemberRole.MEMBER_ROLE_UNREACHABLE]: 'UNREACHABLE',
};

function groupRows(label: string, group: GroupStatus, withData: boolean): string[][] {
  // Lag is measured against the most advanced member of the group, which is what a follower
  // must still apply to catch up.
  const maxApplied = Math.max(0, ...group.members.map((m) => m.appliedIndex));
  return group.members.map((m, i) => [
    i === 0 ? label : '',
    m.memberId,
    m.address,
    m.role === MemberRole.MEMBER_ROLE_UNREACHABLE ? `UNREACHABLE ${m.error}`.trim() : (ROLE_NAMES[m.role] ?? 'unknown'),
    m.engine,
    String(m.term),
    String(m.commitIndex),
    String(m.appliedIndex),
    String(maxApplied - m.appliedIndex),
    i === 0 && withData ? String(group.keyCount) : '',
    i === 0 && withData ? `${(group.ringShare * 100).toFixed(1)}%` : '',
  ]);
}

export function formatStatusTable(status: StatusResponse): string {
  const table = new Table({
    head: ['GROUP', 'MEMBER', 'ADDRESS', 'ROLE', 'ENGINE', 'TERM', 'COMMIT', 'APPLIED', 'LAG', 'KEYS', 'RING'],
    style: { head: [], border: [] },
  });
  if (status.meta) table.push(...groupRows('meta', status.meta, false));
  for (const group of status.groups) table.push(...groupRows(`shard ${group.groupId}`, group, true));
  const totalKeys = status.groups.reduce((sum, g) => sum + g.keyCount, 0);
  return `ring epoch ${status.ringEpoch} · ${status.groups.length} shard groups · ${totalKeys} keys\n${table.toString()}\n`;
}
