// Three coordinators forming the meta group (raft) in front of real shard replicas, all in this
// process over real gRPC on 127.0.0.1: bootstrap from the flags, forwarding from followers,
// failover, a restart from the data dir, and a meta group without a leader.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Metadata, credentials, status, type ServiceError as GrpcError } from '@grpc/grpc-js';
import { ConcordClient } from '@concord/client';
import { MemberRole, type GetRingResponse, type StatusResponse } from '@concord/proto/cluster';
import { TxnClient, type CommitResponse } from '@concord/proto/txn';
import type { ShardNode } from '@concord/shard';
import type { CoordinatorNode } from './coordinator-node.js';
import { METADATA_STATUS_SCOPE, STATUS_SCOPE_MEMBER } from './meta-status.js';
import { CoordinatorClient, MetaTestCluster, call, capturingLogger, eventually, failsWith, startTestShards } from './testing.js';

const GROUPS = ['g1', 'g2', 'g3'];
const IDS = ['coordinator-0', 'coordinator-1', 'coordinator-2'];
/** Not the default, so a ring that came from the flags is told from one that did not. */
const RING_EPOCH = 3;

describe('the meta group of three coordinators', () => {
  let root: string;
  let shards: ShardNode[] = [];
  let cluster: MetaTestCluster;
  const clients = new Map<string, CoordinatorClient>();
  /** Key → value written through some coordinator and acknowledged. */
  const written = new Map<string, string>();

  const client = (node: CoordinatorNode): CoordinatorClient => {
    let existing = clients.get(node.address);
    if (existing === undefined) {
      existing = new CoordinatorClient(node.address);
      clients.set(node.address, existing);
    }
    return existing;
  };
  const put = async (via: CoordinatorNode, key: string, value: string) => {
    const response = await client(via).put(key, value);
    written.set(key, value);
    return response;
  };
  const expectedRing = (): [string, string[]][] => GROUPS.map((groupId, i) => [groupId, [shards[i]!.address]]);
  const ringOf = (ring: GetRingResponse): [string, string[]][] => ring.groups.map((group) => [group.groupId, group.addresses]);

  /** Every acknowledged write reads back, through `via`. */
  const assertWrittenVisible = async (via: CoordinatorNode): Promise<void> => {
    for (const [key, value] of written) {
      const read = await client(via).get(key);
      assert.equal(read.found, true, `${key} through ${via.memberId}`);
      assert.equal(read.value.toString(), value, `${key} through ${via.memberId}`);
    }
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'concord-meta-group-test-'));
    shards = await startTestShards(root, GROUPS, RING_EPOCH);
    const groupsFlag = shards.map((shard, i) => `${GROUPS[i]}=${shard.address}`).join(',');
    // Snapshots every few entries, so recovery and catching up go through the state machine's
    // snapshot and restore, not only through replaying the log.
    cluster = await MetaTestCluster.start({ ids: IDS, groups: groupsFlag, flags: ['--ring-epoch', String(RING_EPOCH), '--snapshot-every', '2'] });
  });

  after(async () => {
    for (const each of clients.values()) each.close();
    await cluster?.close();
    for (const shard of shards) await shard.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('elects a leader and bootstraps the ring from the flags; every coordinator serves it', async () => {
    const leader = await cluster.leader();
    for (const node of cluster.running()) {
      // The leader proposes the bootstrap once it leads; until it is applied there is no ring.
      const ring = await eventually(`the ring through ${node.memberId}`, () => client(node).ring());
      assert.equal(ring.epoch, RING_EPOCH);
      assert.equal(ring.vnodesPerGroup, 128);
      assert.deepEqual(ringOf(ring), expectedRing());
    }
    // Replicated, not only on the leader: every member applied the same directory.
    await eventually('every member to apply the bootstrap', () => cluster.running().every((node) => (node.metaStatus()?.appliedIndex ?? 0) >= (leader.metaStatus()?.commitIndex ?? 1)));
  });

  it('Status through any coordinator lists every meta member from the meta group, and the shard groups', async () => {
    const leader = await cluster.leader();
    for (const node of cluster.running()) {
      const report: StatusResponse = await client(node).status();
      assert.equal(report.ringEpoch, RING_EPOCH);
      const meta = report.meta;
      assert.ok(meta);
      assert.equal(meta.groupId, 'meta');
      assert.equal(meta.leaderId, leader.memberId);
      assert.deepEqual(meta.members.map((member) => member.memberId), IDS);
      for (const member of meta.members) {
        assert.equal(member.engine, 'raft', member.memberId);
        assert.equal(member.error, '', member.memberId);
        assert.equal(member.address, cluster.address(member.memberId));
        assert.equal(member.role, member.memberId === leader.memberId ? MemberRole.MEMBER_ROLE_LEADER : MemberRole.MEMBER_ROLE_FOLLOWER);
        assert.equal(member.term, leader.metaStatus()?.term);
        assert.ok(member.appliedIndex > 0 && member.commitIndex >= member.appliedIndex, `${member.memberId} progress`);
      }
      assert.deepEqual(report.groups.map((group) => [group.groupId, group.leaderId]), GROUPS.map((groupId) => [groupId, `${groupId}-0`]));
    }
    // The internal probe of one member answers for that member alone, also on a follower.
    const follower = cluster.followers(leader)[0]!;
    const probe = new Metadata();
    probe.set(METADATA_STATUS_SCOPE, STATUS_SCOPE_MEMBER);
    const own = await client(follower).status(probe);
    assert.deepEqual(own.meta?.members.map((member) => [member.memberId, member.role]), [[follower.memberId, MemberRole.MEMBER_ROLE_FOLLOWER]]);
    assert.deepEqual(own.groups, []);
  });

  it('followers forward KV calls to the leader: a put through one is read through the others', async () => {
    const leader = await cluster.leader();
    const [first, second] = cluster.followers(leader);
    assert.ok(first && second);
    const { version } = await put(first, 'forwarded/a', 'through a follower');
    for (const via of [second, leader, first]) {
      const read = await client(via).get('forwarded/a');
      assert.deepEqual([read.found, read.value.toString(), read.version], [true, 'through a follower', version]);
    }

    // Failures come back with their status, message and trailing metadata.
    const conflict = await failsWith(client(second).put('forwarded/a', 'again', 0), status.ABORTED, /./);
    assert.deepEqual(conflict.metadata.get('concord-current-version'), [String(version)]);
    await failsWith(client(first).put('', 'x'), status.INVALID_ARGUMENT, /^key: must not be empty/);
    const txn = new TxnClient(first.address, credentials.createInsecure());
    try {
      await failsWith(call((callback: (e: GrpcError | null, r: CommitResponse) => void) => txn.commit({ conditions: [], ops: [] }, callback)), status.UNIMPLEMENTED, /transactions are not built yet/);
    } finally {
      txn.close();
    }

    // Scan is forwarded as a stream: more keys than one message holds, in order, through a follower.
    const keys = Array.from({ length: 300 }, (_, i) => `forwarded/scan/${String(i).padStart(4, '0')}`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((key) => put(second, key, key)));
    assert.deepEqual(await client(first).scanKeys('forwarded/scan/'), keys);
    assert.deepEqual(await client(second).scanKeys('forwarded/scan/', 7), keys.slice(0, 7));
  });

  it('serves the SDK through a follower in both routing modes', async () => {
    const leader = await cluster.leader();
    const follower = cluster.followers(leader)[0]!;
    const direct = await ConcordClient.connect({ address: follower.address });
    const routed = await ConcordClient.connect({ address: follower.address, routing: 'coordinator' });
    try {
      const { version } = await direct.put('sdk/direct', 'd');
      written.set('sdk/direct', 'd');
      assert.equal((await routed.get('sdk/direct')).version, version);
      assert.equal((await direct.ring()).epoch, RING_EPOCH);
    } finally {
      direct.close();
      routed.close();
    }
  });

  it('when the leader stops, the survivors elect another and keep serving the same ring, Status and KV', async () => {
    const old = await cluster.leader();
    await cluster.stopMember(old.memberId);
    const leader = await cluster.leader();
    assert.notEqual(leader.memberId, old.memberId);
    for (const node of cluster.running()) {
      const ring = await client(node).ring();
      assert.equal(ring.epoch, RING_EPOCH);
      assert.deepEqual(ringOf(ring), expectedRing());
      const report = await client(node).status();
      assert.equal(report.ringEpoch, RING_EPOCH);
      assert.equal(report.meta?.leaderId, leader.memberId);
      const stopped = report.meta?.members.find((member) => member.memberId === old.memberId);
      assert.equal(stopped?.role, MemberRole.MEMBER_ROLE_UNREACHABLE);
      assert.match(stopped?.error ?? '', /^(UNAVAILABLE|DEADLINE_EXCEEDED): /);
      assert.equal(report.groups.length, GROUPS.length);
    }
    for (const node of cluster.running()) await put(node, `failover/${node.memberId}`, `after the failover, through ${node.memberId}`);
    for (const node of cluster.running()) await assertWrittenVisible(node);
  });

  it('the stopped coordinator restarts from its data dir and rejoins; different flags do not change the replicated ring', async () => {
    const leader = await cluster.leader();
    const [stoppedId] = IDS.filter((id) => !cluster.running().some((node) => node.memberId === id));
    assert.ok(stoppedId);
    const { logger, lines } = capturingLogger('warn');
    const restarted = await cluster.startMember(
      stoppedId,
      ['--groups', 'g1=127.0.0.1:1,g9=127.0.0.1:9', '--ring-epoch', '9', '--ring-vnodes', '16', '--snapshot-every', '2'],
      logger,
    );
    // It catches up with the log (its own, then the leader's) and follows the leader.
    await cluster.leader();
    await eventually('the restarted member to catch up', () => (restarted.metaStatus()?.appliedIndex ?? 0) >= (leader.metaStatus()?.commitIndex ?? Infinity));
    // The test's channel to this address may still be backing off from while the member was
    // down (up to a second): the question is whether the member serves the ring, not how fast a
    // client notices it is back.
    const ring = await eventually('the restarted member to serve the ring', () => client(restarted).ring());
    assert.equal(ring.epoch, RING_EPOCH);
    assert.equal(ring.vnodesPerGroup, 128);
    assert.deepEqual(ringOf(ring), expectedRing());
    assert.ok(
      lines().some((line) => line.level === 'warn' && /differ from the ring the meta group holds/.test(line.msg) && /epoch 9/.test(String(line['flags']))),
      'a warning that the flags disagree with the replicated ring',
    );
    const report = await eventually('every member reachable again', async () => {
      const answer = await client(restarted).status();
      return answer.meta?.members.every((member) => member.role !== MemberRole.MEMBER_ROLE_UNREACHABLE) === true ? answer : undefined;
    });
    assert.equal(report.ringEpoch, RING_EPOCH);
    assert.deepEqual(report.meta?.members.map((member) => member.memberId), IDS);
    await assertWrittenVisible(restarted);
    await put(restarted, 'rejoined/key', 'through the restarted coordinator');
    for (const node of cluster.running()) await assertWrittenVisible(node);
  });

  it('without a meta leader: calls that need it fail UNAVAILABLE saying so, Status still answers; a quorum brings it all back', async () => {
    const leader = await cluster.leader();
    const survivor = cluster.followers(leader)[0]!;
    const others = cluster.running().filter((node) => node !== survivor);
    for (const node of others) await cluster.stopMember(node.memberId);

    // Alone, the survivor cannot elect anyone: once it notices the leader is gone it knows none.
    await eventually('the survivor to know no leader', () => survivor.metaStatus()?.leaderId === undefined || survivor.metaStatus()?.leaderId === '');
    await failsWith(client(survivor).put('leaderless/key', 'x'), status.UNAVAILABLE, /^no meta leader elected yet; retry$/);
    await failsWith(client(survivor).ring(), status.UNAVAILABLE, /^no meta leader elected yet; retry$/);
    const report = await client(survivor).status();
    assert.equal(report.meta?.leaderId, '');
    assert.equal(report.ringEpoch, RING_EPOCH, 'the ring it has applied');
    assert.deepEqual(
      report.meta?.members.map((member) => [member.memberId, member.role === MemberRole.MEMBER_ROLE_UNREACHABLE]),
      IDS.map((id) => [id, id !== survivor.memberId]),
    );
    assert.equal(report.groups.length, GROUPS.length);

    for (const node of others) await cluster.startMember(node.memberId);
    await cluster.leader();
    await eventually('KV through the survivor again', () => put(survivor, 'leaderless/key', 'after the quorum came back'));
    for (const node of cluster.running()) await assertWrittenVisible(node);
  });
});
