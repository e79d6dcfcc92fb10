// The meta group's own membership through Cluster.ChangeShardMembership with group_id "meta", with
// coordinators in this process over real gRPC on 127.0.0.1: bad input, refused steps, and the
// replacement of a lost coordinator by one started with --join (learner, promote, remove), after
// which the new member counts toward the majority and can lead.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Metadata, status, type ServiceError as GrpcError } from '@grpc/grpc-js';
import { MemberRole, type ChangeShardMembershipRequest, type ChangeShardMembershipResponse } from '@concord/proto/cluster';
import { MembershipChangeKind } from '@concord/proto/shard';
import type { ShardNode } from '@concord/shard';
import { startCoordinator, type CoordinatorNode } from '../coordinator-node.js';
import { METADATA_STATUS_SCOPE, STATUS_SCOPE_MEMBER } from '../meta-status.js';
import { compileCoordinatorOptions } from '../options.js';
import { CoordinatorClient, MetaTestCluster, call, eventually, failsWith, freePorts, startTestShards, testLogger } from '../testing.js';

const IDS = ['coordinator-0', 'coordinator-1', 'coordinator-2'];
const NEW_ID = 'coordinator-3';
const { MEMBERSHIP_CHANGE_KIND_ADD_LEARNER: ADD, MEMBERSHIP_CHANGE_KIND_PROMOTE: PROMOTE, MEMBERSHIP_CHANGE_KIND_REMOVE: REMOVE } = MembershipChangeKind;
/** Bounded retries of a promote refused while the learner catches up (a liveness guard). */
const PROMOTE_ATTEMPTS = 100;

function change(client: CoordinatorClient, request: Partial<ChangeShardMembershipRequest>): Promise<ChangeShardMembershipResponse> {
  const full: ChangeShardMembershipRequest = { groupId: 'meta', kind: ADD, memberId: '', address: '', ...request };
  return call((callback: (error: GrpcError | null, response: ChangeShardMembershipResponse) => void) => client.cluster.changeShardMembership(full, callback));
}

const membersOf = (response: ChangeShardMembershipResponse): [string, boolean][] => response.members.map((member) => [member.memberId, member.voter]);

describe('changing the meta group\'s membership (group_id "meta")', () => {
  let root: string;
  let shards: ShardNode[] = [];
  let cluster: MetaTestCluster;
  let joined: CoordinatorNode | undefined;
  let joinedAddress = '';
  const clients = new Map<string, CoordinatorClient>();
  const client = (address: string): CoordinatorClient => {
    let existing = clients.get(address);
    if (existing === undefined) {
      existing = new CoordinatorClient(address);
      clients.set(address, existing);
    }
    return existing;
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'concord-meta-membership-test-'));
    shards = await startTestShards(root, ['g1']);
    cluster = await MetaTestCluster.start({ ids: IDS, groups: `g1=${shards[0]!.address}` });
  });

  after(async () => {
    for (const each of clients.values()) each.close();
    await joined?.stop();
    await cluster?.close();
    for (const shard of shards) await shard.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('refuses bad fields with INVALID_ARGUMENT naming the field, also through a follower', async () => {
    const leader = await cluster.leader();
    const follower = client(cluster.followers(leader)[0]!.address);
    await failsWith(change(follower, { kind: MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_UNSPECIFIED, memberId: NEW_ID }), status.INVALID_ARGUMENT, /^kind: must be ADD_LEARNER, PROMOTE or REMOVE/);
    await failsWith(change(follower, { kind: ADD, memberId: 'bad id', address: '127.0.0.1:1' }), status.INVALID_ARGUMENT, /^member_id: must be 1 to 64 letters/);
    await failsWith(change(follower, { kind: ADD, memberId: NEW_ID, address: '' }), status.INVALID_ARGUMENT, /^address: ADD_LEARNER needs the new coordinator's host:port/);
    await failsWith(change(follower, { kind: ADD, memberId: NEW_ID, address: 'nowhere' }), status.INVALID_ARGUMENT, /^address: ADD_LEARNER needs/);
    await failsWith(change(follower, { kind: PROMOTE, memberId: NEW_ID, address: '127.0.0.1:1' }), status.INVALID_ARGUMENT, /^address: only ADD_LEARNER takes an address/);
  });

  it('refuses steps the group cannot take with FAILED_PRECONDITION saying why, changing nothing', async () => {
    const leader = await cluster.leader();
    const via = client(leader.address);
    await failsWith(change(via, { kind: ADD, memberId: NEW_ID, address: cluster.address('coordinator-1') }), status.FAILED_PRECONDITION, /^address: .* is the address of meta member coordinator-1; remove coordinator-1 first/);
    await failsWith(change(via, { kind: ADD, memberId: NEW_ID, address: shards[0]!.address }), status.FAILED_PRECONDITION, /^address: .* is a replica of shard group g1/);
    await failsWith(change(via, { kind: ADD, memberId: 'coordinator-1', address: '127.0.0.1:1' }), status.FAILED_PRECONDITION, /^the meta group refused to add coordinator-1 .*: coordinator-1 is already a member/);
    await failsWith(change(via, { kind: PROMOTE, memberId: 'coordinator-1' }), status.FAILED_PRECONDITION, /^the meta group refused to promote coordinator-1: coordinator-1 is not a learner/);
    await failsWith(change(via, { kind: REMOVE, memberId: 'coordinator-9' }), status.FAILED_PRECONDITION, /^the meta group refused to remove coordinator-9: coordinator-9 is not a member/);
    // Nothing changed, addresses included: a refused addition of a current member leaves no note of a wrong address.
    for (const node of cluster.running()) {
      assert.deepEqual(
        node.metaStatus()?.members.map((member) => [member.memberId, member.address, member.voter]),
        IDS.map((id) => [id, cluster.address(id), true]),
        node.memberId,
      );
    }
  });

  it('replaces a lost coordinator: one started with --join is added as a learner, promoted, and the lost one removed', async () => {
    // coordinator-2 is lost for good (stopped here, leader or not; its data stays unused).
    const lost = 'coordinator-2';
    await cluster.stopMember(lost);
    const leader = await cluster.leader();
    const running = cluster.running();
    const [port] = await freePorts(1);
    joinedAddress = `127.0.0.1:${port!}`;
    const argv = [
      '--member-id', NEW_ID,
      '--listen', joinedAddress,
      '--join',
      '--peers', running.map((node) => `${node.memberId}=${node.address}`).join(','),
      '--data-dir', join(root, NEW_ID),
      '--tick-ms', '20',
      '--sync=false',
      '--log-level', 'silent',
    ];
    joined = await startCoordinator(compileCoordinatorOptions({ argv, env: {} }), testLogger.child({ member_id: NEW_ID }));
    assert.equal(joined.address, joinedAddress);

    // Before it is added it knows no leader: it serves nothing, but its Status says what it is.
    await failsWith(client(joinedAddress).ring(), status.UNAVAILABLE, /^no meta leader elected yet; retry$/);
    const waiting = await client(joinedAddress).status();
    assert.equal(waiting.meta?.leaderId, '');
    assert.deepEqual(waiting.meta?.members.map((member) => [member.memberId, member.error]), [[NEW_ID, 'not a member of the meta group (not added yet, or removed)']]);

    // 1. Add, through a follower (forwarded to the leader).
    const follower = client(cluster.followers(leader)[0]!.address);
    const added = await change(follower, { kind: ADD, memberId: NEW_ID, address: joinedAddress });
    assert.deepEqual(membersOf(added), [['coordinator-0', true], ['coordinator-1', true], ['coordinator-2', true], [NEW_ID, false]]);
    assert.equal(added.members.find((member) => member.memberId === NEW_ID)?.address, joinedAddress);
    await eventually('the learner to catch up', () => (joined?.metaStatus()?.appliedIndex ?? 0) >= (leader.metaStatus()?.commitIndex ?? Infinity) && joined?.metaStatus()?.role === 'learner');
    const probe = new Metadata();
    probe.set(METADATA_STATUS_SCOPE, STATUS_SCOPE_MEMBER);
    const own = await client(joinedAddress).status(probe);
    assert.deepEqual(own.meta?.members.map((member) => [member.memberId, member.role, member.error]), [[NEW_ID, MemberRole.MEMBER_ROLE_LEARNER, '']]);
    // A learner forwards like any follower: the ring through it.
    assert.equal((await client(joinedAddress).ring()).groups[0]?.groupId, 'g1');

    // 2. Promote, retrying while the leader finds it behind (a liveness bound, not a timing).
    let promoted: ChangeShardMembershipResponse | undefined;
    for (let attempt = 0; promoted === undefined && attempt < PROMOTE_ATTEMPTS; attempt++) {
      try {
        promoted = await change(client(leader.address), { kind: PROMOTE, memberId: NEW_ID });
      } catch (error) {
        assert.equal((error as GrpcError).code, status.FAILED_PRECONDITION, (error as GrpcError).details);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    assert.ok(promoted, 'the learner was promoted');
    assert.deepEqual(membersOf(promoted), [['coordinator-0', true], ['coordinator-1', true], ['coordinator-2', true], [NEW_ID, true]]);

    // 3. Remove the lost one, through the new member (forwarded).
    const removed = await change(client(joinedAddress), { kind: REMOVE, memberId: lost });
    assert.deepEqual(membersOf(removed), [['coordinator-0', true], ['coordinator-1', true], [NEW_ID, true]]);

    // Status lists the new membership with roles, through every coordinator.
    for (const node of [...cluster.running(), joined]) {
      const report = await eventually(`Status through ${node.memberId} to list the new membership`, async () => {
        const answer = await client(node.address).status();
        return answer.meta?.members.length === 3 && answer.meta.members.every((member) => member.role !== MemberRole.MEMBER_ROLE_UNREACHABLE) ? answer : undefined;
      });
      const meta = report.meta!;
      assert.deepEqual(meta.members.map((member) => member.memberId).sort(), ['coordinator-0', 'coordinator-1', NEW_ID]);
      assert.equal(meta.members.find((member) => member.memberId === NEW_ID)?.address, joinedAddress);
      assert.deepEqual(
        meta.members.map((member) => member.role).sort(),
        [MemberRole.MEMBER_ROLE_LEADER, MemberRole.MEMBER_ROLE_FOLLOWER, MemberRole.MEMBER_ROLE_FOLLOWER].sort(),
      );
    }
  });

  it('the new member counts toward the majority: with the leader stopped, the other two elect one and serve', async () => {
    const leader = await cluster.leader();
    // cluster.leader() looks at MetaTestCluster's members only; the joined one must follow too.
    await eventually('the joined coordinator to follow the leader', () => joined?.metaStatus()?.leaderId === leader.memberId);
    const survivor = cluster.running().find((node) => node !== leader)!;
    await cluster.stopMember(leader.memberId);
    // Two voters of three run: survivor and the joined coordinator. One of them leads.
    const next = await eventually('a leader among the survivor and the joined coordinator', () => {
      const leaders = [survivor, joined!].filter((node) => node.metaStatus()?.role === 'leader');
      return leaders.length === 1 && [survivor, joined!].every((node) => node.metaStatus()?.leaderId === leaders[0]!.memberId) ? leaders[0] : undefined;
    });
    for (const node of [survivor, joined!]) {
      const put = await eventually(`a put through ${node.memberId}`, () => client(node.address).put(`after-replace/${node.memberId}`, node.memberId));
      assert.ok(put.version > 0);
    }
    for (const node of [survivor, joined!]) {
      for (const writer of [survivor, joined!]) {
        const read = await client(node.address).get(`after-replace/${writer.memberId}`);
        assert.deepEqual([read.found, read.value.toString()], [true, writer.memberId]);
      }
    }
    const report = await client(survivor.address).status();
    assert.equal(report.meta?.leaderId, next.memberId);
    assert.equal(report.meta?.members.find((member) => member.memberId === leader.memberId)?.role, MemberRole.MEMBER_ROLE_UNREACHABLE);
  });
});

describe('removing the meta leader itself', () => {
  it('applies, the leader steps down, and the other two elect one of themselves and serve', async () => {
    const root = await mkdtemp(join(tmpdir(), 'concord-meta-remove-leader-test-'));
    const shards = await startTestShards(root, ['g1']);
    const cluster = await MetaTestCluster.start({ ids: IDS, groups: `g1=${shards[0]!.address}` });
    const clients: CoordinatorClient[] = [];
    try {
      const leader = await cluster.leader();
      const others = cluster.followers(leader);
      const via = new CoordinatorClient(others[0]!.address);
      clients.push(via);
      const removed = await change(via, { kind: REMOVE, memberId: leader.memberId });
      assert.deepEqual(membersOf(removed).map(([id]) => id), IDS.filter((id) => id !== leader.memberId));
      const next = await eventually('a leader among the remaining two', () => {
        const leaders = others.filter((node) => node.metaStatus()?.role === 'leader');
        return leaders.length === 1 && others.every((node) => node.metaStatus()?.leaderId === leaders[0]!.memberId) ? leaders[0] : undefined;
      });
      assert.notEqual(next.memberId, leader.memberId);
      await cluster.stopMember(leader.memberId);
      for (const node of others) {
        const client = new CoordinatorClient(node.address);
        clients.push(client);
        await eventually(`a put through ${node.memberId}`, () => client.put(`after-removal/${node.memberId}`, 'x'));
        const report = await client.status();
        assert.deepEqual(report.meta?.members.map((member) => member.memberId).sort(), IDS.filter((id) => id !== leader.memberId));
      }
    } finally {
      for (const each of clients) each.close();
      await cluster.close();
      for (const shard of shards) await shard.stop();
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('group_id "meta" on a coordinator with the config engine', () => {
  it('is FAILED_PRECONDITION: there is no meta group', async () => {
    const [port] = await freePorts(1);
    const node = await startCoordinator(
      compileCoordinatorOptions({ argv: ['--engine', 'config', '--listen', `127.0.0.1:${port!}`, '--groups', 'g1=127.0.0.1:1', '--log-level', 'silent'], env: {} }),
      testLogger,
    );
    const via = new CoordinatorClient(node.address);
    try {
      await failsWith(change(via, { kind: REMOVE, memberId: 'coordinator-1' }), status.FAILED_PRECONDITION, /^group_id: this coordinator runs --engine config/);
    } finally {
      via.close();
      await node.stop();
    }
  });
});
