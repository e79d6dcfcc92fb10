import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemberRole, type GroupStatus, type MemberStatus, type StatusResponse } from '@concord/proto/cluster';
import { MAX_ERROR_CHARS, formatShare, formatStatusTable, ringBalance, shortenError } from './status-table.js';

const REFUSED =
  'UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:7103. Resolution note: ';
const TIMED_OUT = 'DEADLINE_EXCEEDED: Deadline exceeded after 1.002s,LB pick: 0.001s,remote_addr=127.0.0.1:7071';

function member(memberId: string, address: string, fields: Partial<MemberStatus> = {}): MemberStatus {
  return { memberId, address, role: MemberRole.MEMBER_ROLE_FOLLOWER, term: 2, commitIndex: 40, appliedIndex: 40, engine: 'raft', error: '', ...fields };
}

function unreachable(memberId: string, address: string, error: string): MemberStatus {
  return member(memberId, address, { role: MemberRole.MEMBER_ROLE_UNREACHABLE, term: 0, commitIndex: 0, appliedIndex: 0, engine: '', error });
}

const STATUS: StatusResponse = {
  ringEpoch: 1,
  meta: {
    groupId: 'meta',
    leaderId: 'coordinator-1',
    keyCount: 0,
    ringShare: 0,
    members: [
      unreachable('coordinator-0', '127.0.0.1:7070', TIMED_OUT),
      member('coordinator-1', '127.0.0.1:7071', { role: MemberRole.MEMBER_ROLE_LEADER, term: 3, commitIndex: 5, appliedIndex: 5 }),
      member('coordinator-2', '127.0.0.1:7072', { term: 3, commitIndex: 5, appliedIndex: 4 }),
    ],
  },
  groups: [
    {
      groupId: 'g1',
      leaderId: 'g1-0',
      keyCount: 12,
      ringShare: 1,
      members: [
        member('g1-0', '127.0.0.1:7101', { role: MemberRole.MEMBER_ROLE_LEADER }),
        member('g1-1', '127.0.0.1:7102'),
        unreachable('', '127.0.0.1:7103', REFUSED),
      ],
    },
  ],
};

describe('formatStatusTable', () => {
  const output = formatStatusTable(STATUS);
  const lines = output.split('\n');

  it('shows an unreachable member as UNREACHABLE with the cause, not the whole gRPC error', () => {
    const row = lines.find((line) => line.includes('127.0.0.1:7103'));
    assert.ok(row, output);
    assert.match(row, /UNREACHABLE/);
    assert.match(row, /connection refused/);
    assert.ok(!output.includes('Resolution note'), output);
    const metaRow = lines.find((line) => line.includes('coordinator-0'));
    assert.match(metaRow ?? '', /UNREACHABLE .*no answer in time \(DEADLINE_EXCEEDED\)/);
  });

  it('keeps the table about as wide as without errors', () => {
    const widest = Math.max(...lines.map((line) => line.length));
    const healthy = formatStatusTable({
      ...STATUS,
      meta: { ...STATUS.meta!, members: STATUS.meta!.members.map((each) => ({ ...each, role: MemberRole.MEMBER_ROLE_FOLLOWER, error: '' })) },
      groups: STATUS.groups.map((group) => ({ ...group, members: group.members.map((each) => ({ ...each, role: MemberRole.MEMBER_ROLE_FOLLOWER, error: '' })) })),
    });
    const healthyWidest = Math.max(...healthy.split('\n').map((line) => line.length));
    assert.ok(widest <= healthyWidest + MAX_ERROR_CHARS, `${widest} columns, ${healthyWidest} without errors:\n${output}`);
    assert.ok(widest < 130, `${widest} columns:\n${output}`);
  });

  it('shows the other members, and the lag behind the most advanced one', () => {
    const follower = lines.find((line) => line.includes('coordinator-2'));
    assert.match(follower ?? '', /follower\s*│\s*raft\s*│\s*3\s*│\s*5\s*│\s*4\s*│\s*1\s*│/);
    assert.match(lines.find((line) => line.includes('g1-0')) ?? '', /shard g1 .*leader.*│\s*12\s*│\s*100\.0%/);
  });

  it('says where the full errors are', () => {
    assert.match(output, /`concord status --json` shows them in full/);
    const noErrors = formatStatusTable({ ...STATUS, meta: undefined, groups: [{ ...STATUS.groups[0]!, members: STATUS.groups[0]!.members.slice(0, 2) }] });
    assert.doesNotMatch(noErrors, /shows them in full/);
  });
});

describe('shortenError', () => {
  it('names the cause of a refused connection', () => {
    assert.equal(shortenError(REFUSED), 'connection refused');
  });

  it('keeps the last error grpc-js reports for other connection failures', () => {
    assert.equal(shortenError('UNAVAILABLE: No connection established. Last error: Error: getaddrinfo ENOTFOUND nohost. Resolution note: '), 'getaddrinfo ENOTFOUND nohost');
  });

  it('cuts anything else at the limit with an ellipsis', () => {
    const long = 'not running: recovering its meta log, or shutting down';
    const short = shortenError(long);
    assert.equal(short.length, MAX_ERROR_CHARS);
    assert.ok(short.endsWith('…'));
    assert.ok(long.startsWith(short.slice(0, -1)));
    assert.equal(shortenError('UNAVAILABLE: Connection dropped'), 'UNAVAILABLE: Connection dropped');
  });
});

describe('ring share and balance', () => {
  const group = (groupId: string, ringShare: number, keyCount = 0): GroupStatus => ({
    groupId,
    leaderId: `${groupId}-0`,
    keyCount,
    ringShare,
    members: [member(`${groupId}-0`, '127.0.0.1:7101', { role: MemberRole.MEMBER_ROLE_LEADER })],
  });
  const threeGroups: StatusResponse = { ringEpoch: 2, meta: undefined, groups: [group('g1', 0.3125, 10), group('g2', 0.375, 20), group('g3', 0.3125, 1)] };

  it("prints each shard group's share of the ring in its RING cell, to a tenth of a percent", () => {
    const output = formatStatusTable(threeGroups);
    assert.match(output, /shard g1 .*│\s*10\s*│\s*31\.3%\s*│/);
    assert.match(output, /shard g2 .*│\s*20\s*│\s*37\.5%\s*│/);
    assert.equal(formatShare(1 / 3), '33.3%');
    assert.equal(formatShare(0), '0.0%');
  });

  it('measures balance as the largest share over the mean share, naming the largest and smallest group', () => {
    const balance = ringBalance(threeGroups.groups);
    assert.ok(balance);
    assert.equal(balance.groups, 3);
    assert.deepEqual(balance.largest, { groupId: 'g2', share: 0.375 });
    assert.deepEqual(balance.smallest, { groupId: 'g1', share: 0.3125 });
    assert.equal(balance.maxOverMean, 1.125);
    assert.equal(ringBalance([group('g1', 0.25), group('g2', 0.25), group('g3', 0.25), group('g4', 0.25)])?.maxOverMean, 1);
  });

  it('has no balance without shard groups, or before the coordinators know the ring', () => {
    assert.equal(ringBalance([]), undefined);
    assert.equal(ringBalance([group('g1', 0), group('g2', 0)]), undefined);
  });

  it('sums up epoch, groups, keys and balance in the first line', () => {
    const first = formatStatusTable(threeGroups).split('\n')[0];
    assert.equal(first, 'ring epoch 2 · 3 shard groups · 31 keys · ring balance 1.13 (largest g2 37.5%, smallest g1 31.3%)');
    const one = formatStatusTable({ ringEpoch: 1, meta: undefined, groups: [group('g1', 1, 1)] }).split('\n')[0];
    assert.equal(one, 'ring epoch 1 · 1 shard group · 1 key', 'one group owns the whole ring: no balance to speak of');
  });
});
