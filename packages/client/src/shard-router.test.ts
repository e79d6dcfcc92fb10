import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Metadata, status } from '@grpc/grpc-js';
import { ReadConsistency, type KeyValue } from '@concord/proto/common';
import { HashRing } from '@concord/ring';
import { ConcordError } from './errors.js';
import { ShardRouter, recoveryFor } from './shard-router.js';
import { FakeCluster } from './testing/fake-cluster.js';

const LINEARIZABLE = ReadConsistency.READ_CONSISTENCY_LINEARIZABLE;

function scanRequest(overrides: { prefix?: string; startKey?: string; endKey?: string; limit?: number } = {}) {
  return { prefix: '', startKey: '', endKey: '', limit: 0, consistency: LINEARIZABLE, ...overrides };
}

async function collect(iterable: AsyncIterable<KeyValue>): Promise<string[]> {
  const keys: string[] = [];
  for await (const kv of iterable) keys.push(kv.key);
  return keys;
}

const RING_GROUPS = ['g1', 'g2', 'g3'];

function resetReplicas(cluster: FakeCluster): void {
  cluster.ring = new HashRing({ epoch: 1, vnodesPerGroup: 16, groups: RING_GROUPS });
  cluster.published = undefined;
  cluster.getRingCalls = 0;
  for (const group of cluster.groups.values()) {
    group.data.clear();
    for (const replica of group.replicas) {
      replica.leader = replica === group.replicas[0];
      replica.leaderHint = '';
      for (const method of Object.keys(replica.calls) as (keyof typeof replica.calls)[]) replica.calls[method] = 0;
      for (const method of Object.keys(replica.scripted) as (keyof typeof replica.scripted)[]) delete replica.scripted[method];
      for (const method of Object.keys(replica.always) as (keyof typeof replica.always)[]) delete replica.always[method];
    }
  }
}

function ringEntry(cluster: FakeCluster, groupId: string) {
  const entry = cluster.ringResponse().groups.find((group) => group.groupId === groupId);
  assert.ok(entry);
  return entry;
}

describe('ShardRouter', () => {
  let cluster: FakeCluster;
  let router: ShardRouter;

  before(async () => {
    cluster = await FakeCluster.start({ groups: RING_GROUPS, replicasPerGroup: 2 });
  });
  after(() => cluster.stop());
  beforeEach(() => {
    router?.close();
    resetReplicas(cluster);
    router = new ShardRouter({ ringSource: cluster.ringSource, backoffMs: 1, maxBackoffMs: 5 });
  });

  it('sends each key to the group the ring names and reads it back', async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `user/${i}`);
    for (const key of keys) {
      const { version } = await router.put({ key, value: Buffer.from(`v-${key}`) });
      assert.ok(version > 0);
    }
    for (const key of keys) {
      const owner = cluster.ring.ownerOf(key);
      assert.ok(cluster.group(owner).data.has(key), `${key} should be stored in ${owner}`);
      const read = await router.get({ key, consistency: LINEARIZABLE });
      assert.equal(read.found, true);
      assert.equal(read.value.toString(), `v-${key}`);
    }
    // Every group got some keys, and no call was refused, so none had to be retried.
    for (const group of cluster.groups.values()) {
      assert.ok(group.data.size > 0, `${group.groupId} should own some of 40 keys`);
      assert.equal(group.totalCalls('put'), group.data.size);
    }
    assert.equal(cluster.getRingCalls, 1);
  });

  it('reuses one channel per replica across calls', async () => {
    await router.put({ key: 'a', value: Buffer.from('1') });
    const table = await router.routingTable();
    const channels = (router as unknown as { channels: Map<string, unknown> }).channels;
    const before = channels.size;
    for (let i = 0; i < 20; i++) await router.get({ key: 'a', consistency: LINEARIZABLE });
    assert.equal(channels.size, before);
    assert.ok(channels.size <= [...table.groups.values()].reduce((sum, group) => sum + group.addresses.length, 0));
  });

  it('refreshes the ring on WRONG_SHARD and retries at the new owner', async () => {
    await router.routingTable();
    // The cluster moves to a new ring without g3; the router still holds the old one.
    cluster.ring = new HashRing({ epoch: 2, vnodesPerGroup: 16, groups: ['g1', 'g2'] });
    const movedKey = Array.from({ length: 100 }, (_, i) => `k${i}`).find(
      (key) => new HashRing({ epoch: 1, vnodesPerGroup: 16, groups: RING_GROUPS }).ownerOf(key) === 'g3',
    );
    assert.ok(movedKey);
    const { version } = await router.put({ key: movedKey, value: Buffer.from('x') });
    assert.ok(version > 0);
    assert.equal(cluster.group('g3').totalCalls('put'), 1, 'the stale route was tried once');
    assert.ok(cluster.group(cluster.ring.ownerOf(movedKey)).data.has(movedKey));
    assert.equal(cluster.getRingCalls, 2);
    assert.equal((await router.routingTable()).epoch, 2);
  });

  it('shares one ring refresh among concurrent callers', async () => {
    await router.routingTable();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let loads = 0;
    const slowRouter = new ShardRouter({
      ringSource: async () => {
        loads++;
        await gate;
        return cluster.ringResponse();
      },
    });
    const refreshes = Array.from({ length: 10 }, () => slowRouter.refresh());
    release();
    const tables = await Promise.all(refreshes);
    assert.equal(loads, 1);
    assert.ok(tables.every((table) => table === tables[0]));
    slowRouter.close();
  });

  it('follows a NOT_LEADER hint and then goes straight to the leader', async () => {
    const g1 = cluster.group('g1');
    const [first, second] = g1.replicas;
    assert.ok(first && second);
    // The ring lists first, then second; the leader is second and first knows it.
    first.leader = false;
    first.leaderHint = second.address;
    second.leader = true;
    const key = Array.from({ length: 100 }, (_, i) => `n${i}`).find((candidate) => cluster.ring.ownerOf(candidate) === 'g1');
    assert.ok(key);
    await router.put({ key, value: Buffer.from('1') });
    assert.equal(first.calls.put, 1);
    assert.equal(second.calls.put, 1);
    assert.equal(router.knownLeader('g1'), second.address);
    await router.put({ key, value: Buffer.from('2') });
    await router.get({ key, consistency: LINEARIZABLE });
    assert.equal(first.calls.put, 1, 'the follower is not asked again');
    assert.equal(first.calls.get, 0);
    assert.equal(second.calls.put, 2);
  });

  it('tries the next replica when one is unreachable (reads only)', async () => {
    const g2 = cluster.group('g2');
    const key = Array.from({ length: 100 }, (_, i) => `r${i}`).find((candidate) => cluster.ring.ownerOf(candidate) === 'g2');
    assert.ok(key);
    const [first, second] = g2.replicas;
    assert.ok(first && second);
    second.leader = true;
    first.always.get = { code: status.UNAVAILABLE, details: 'connection refused' };
    first.always.put = { code: status.UNAVAILABLE, details: 'connection refused' };
    const read = await router.get({ key, consistency: LINEARIZABLE });
    assert.equal(read.found, false);
    assert.equal(first.calls.get, 1);
    assert.equal(second.calls.get, 1);

    // A write is not retried after a plain UNAVAILABLE: it may have been applied.
    const writeRouter = new ShardRouter({ ringSource: cluster.ringSource, backoffMs: 1 });
    await assert.rejects(writeRouter.put({ key, value: Buffer.from('x') }), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.equal(error.code, status.UNAVAILABLE);
      assert.equal(error.attempts, 1);
      return true;
    });
    assert.equal(first.calls.put, 1);
    assert.equal(second.calls.put, 0);
    // ...but the caller's own retry goes to the next replica.
    await writeRouter.put({ key, value: Buffer.from('x') });
    assert.equal(second.calls.put, 1);
    writeRouter.close();
  });

  it('does not retry a failed compare-and-set and reports the current version', async () => {
    const { version } = await router.put({ key: 'cas', value: Buffer.from('1') });
    const owner = cluster.group(cluster.ring.ownerOf('cas'));
    const callsBefore = owner.totalCalls('put');
    await assert.rejects(router.put({ key: 'cas', value: Buffer.from('2'), expectedVersion: version + 7 }), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.equal(error.code, status.ABORTED);
      assert.equal(error.currentVersion, version);
      assert.equal(error.message, `key cas: expected version ${version + 7} but found ${version}`);
      return true;
    });
    assert.equal(owner.totalCalls('put'), callsBefore + 1);
    assert.equal(owner.data.get('cas')?.value.toString(), '1');
    const deleted = await router.delete({ key: 'cas', expectedVersion: version });
    assert.deepEqual(deleted, { deleted: true, previousVersion: version });
  });

  it('passes other errors through unchanged, without retrying', async () => {
    const owner = cluster.group(cluster.ring.ownerOf('bad'));
    owner.replicas[0]?.script('put', { code: status.INVALID_ARGUMENT, details: 'value: must be at most 1048576 bytes (got 2000000)' });
    await assert.rejects(router.put({ key: 'bad', value: Buffer.from('x') }), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.equal(error.message, 'value: must be at most 1048576 bytes (got 2000000)');
      return true;
    });
    assert.equal(owner.totalCalls('put'), 1);
  });

  it('gives up after five attempts with the last status', async () => {
    const owner = cluster.group(cluster.ring.ownerOf('stuck'));
    for (const replica of owner.replicas) replica.leader = false; // an election with no winner yet
    await assert.rejects(router.put({ key: 'stuck', value: Buffer.from('x') }), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.equal(error.code, status.UNAVAILABLE);
      assert.equal(error.reason, 'NOT_LEADER');
      assert.equal(error.attempts, 5);
      assert.match(error.message, /is not the leader of .* \(gave up after 5 attempts\)$/);
      return true;
    });
    assert.equal(owner.totalCalls('put'), 5);
    assert.equal(owner.data.size, 0);

    // WRONG_SHARD that a refresh cannot cure is bounded too.
    for (const replica of owner.replicas) replica.leader = replica === owner.replicas[0];
    cluster.ring = new HashRing({ epoch: 9, vnodesPerGroup: 16, groups: RING_GROUPS });
    cluster.published = { ...cluster.ringResponse(), epoch: 1 };
    await assert.rejects(router.get({ key: 'stuck', consistency: LINEARIZABLE }), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.equal(error.code, status.FAILED_PRECONDITION);
      assert.equal(error.reason, 'WRONG_SHARD');
      assert.equal(error.ringEpoch, 9);
      assert.equal(error.attempts, 5);
      return true;
    });
  });

  it('keeps retrying through an election past five attempts while the deadline allows', async () => {
    const owner = cluster.group(cluster.ring.ownerOf('elect'));
    for (const replica of owner.replicas) replica.leader = false; // the leader died; nobody leads yet
    const winner = owner.replicas[1];
    assert.ok(winner);
    // The election ends only after the client has spent more than the ordinary five attempts.
    const watcher = setInterval(() => {
      if (owner.totalCalls('put') >= 7) winner.leader = true;
    }, 5);
    try {
      await router.put({ key: 'elect', value: Buffer.from('x') }, { deadline: new Date(Date.now() + 10_000) });
    } finally {
      clearInterval(watcher);
    }
    assert.ok(owner.totalCalls('put') >= 8, `attempts: ${owner.totalCalls('put')}`);
    assert.equal(owner.data.get('elect')?.value.toString(), 'x');
  });

  it('stops retrying when the deadline leaves no room', async () => {
    const owner = cluster.group(cluster.ring.ownerOf('late'));
    for (const replica of owner.replicas) replica.leader = false;
    const slow = new ShardRouter({ ringSource: cluster.ringSource, maxAttempts: 1000, backoffMs: 40, maxBackoffMs: 40 });
    const started = Date.now();
    await assert.rejects(slow.get({ key: 'late', consistency: LINEARIZABLE }, { deadline: new Date(Date.now() + 150) }), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.ok(error.code === status.UNAVAILABLE || error.code === status.DEADLINE_EXCEEDED, error.codeName);
      assert.ok(error.attempts < 20);
      return true;
    });
    assert.ok(Date.now() - started < 1000);
    slow.close();
  });

  it('merges the scans of every group in key order and stops at the limit', async () => {
    const keys = Array.from({ length: 60 }, (_, i) => `item/${String(i).padStart(3, '0')}`);
    for (const key of [...keys].reverse()) await router.put({ key, value: Buffer.from(key) });
    await router.put({ key: 'other/1', value: Buffer.from('x') });
    for (const group of cluster.groups.values()) assert.ok(group.data.size > 5, 'keys are spread over the three groups');

    assert.deepEqual(await collect(router.scan(scanRequest({ prefix: 'item/' }))), keys);
    assert.deepEqual(await collect(router.scan(scanRequest({ prefix: 'item/', limit: 7 }))), keys.slice(0, 7));
    assert.deepEqual(await collect(router.scan(scanRequest({ startKey: 'item/010', endKey: 'item/020' }))), keys.slice(10, 20));
    assert.deepEqual(await collect(router.scan(scanRequest({ limit: 2 }))), keys.slice(0, 2));
    const everything = await collect(router.scan(scanRequest()));
    assert.deepEqual(everything, cluster.allKeys().map((entry) => entry.key));
    for (const group of cluster.groups.values()) assert.ok(group.totalCalls('scan') >= 5);
  });

  it('orders scanned keys by UTF-8 bytes, not UTF-16 code units', async () => {
    // U+FF5E sorts before U+1F600 in UTF-8 bytes but after it in UTF-16 code units.
    const keys = ['k\u{FF5E}', 'k\u{1F600}', 'ka'];
    for (const key of keys) await router.put({ key, value: Buffer.from('x') });
    assert.deepEqual(await collect(router.scan(scanRequest({ prefix: 'k' }))), ['ka', 'k\u{FF5E}', 'k\u{1F600}']);
  });

  it('stopping a scan early cancels the shard streams', async () => {
    for (let i = 0; i < 30; i++) await router.put({ key: `s${String(i).padStart(2, '0')}`, value: Buffer.from('x') });
    const seen: string[] = [];
    for await (const kv of router.scan(scanRequest({ prefix: 's' }))) {
      seen.push(kv.key);
      if (seen.length === 3) break;
    }
    assert.deepEqual(seen, ['s00', 's01', 's02']);
    // The router still works afterwards (no stuck stream, no unhandled error).
    assert.equal((await collect(router.scan(scanRequest({ prefix: 's' })))).length, 30);
  });

  it('restarts a scan that failed before its first key and surfaces other failures', async () => {
    for (let i = 0; i < 9; i++) await router.put({ key: `t${i}`, value: Buffer.from('x') });
    const g3 = cluster.group('g3');
    const [first, second] = g3.replicas;
    assert.ok(first && second);
    first.leader = false;
    first.leaderHint = second.address;
    second.leader = true;
    assert.equal((await collect(router.scan(scanRequest({ prefix: 't' })))).length, 9);
    assert.equal(first.calls.scan, 1);

    second.script('scan', { code: status.INVALID_ARGUMENT, details: 'limit: must be between 1 and 10000' });
    await assert.rejects(collect(router.scan(scanRequest({ prefix: 't' }))), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.equal(error.message, 'limit: must be between 1 and 10000');
      return true;
    });
  });

  it('refuses a ring with an unknown hash function', async () => {
    const strange = new ShardRouter({ ringSource: async () => ({ ...cluster.ringResponse(), hash: 'md5' }) });
    await assert.rejects(strange.get({ key: 'a', consistency: LINEARIZABLE }), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.equal(error.code, status.FAILED_PRECONDITION);
      assert.match(error.message, /hash "md5" is not supported/);
      return true;
    });
    strange.close();
  });

  it('starts with the leader the ring names', async () => {
    const g1 = cluster.group('g1');
    const [first, second] = g1.replicas;
    assert.ok(first && second);
    first.leader = false;
    second.leader = true;
    cluster.published = {
      ...cluster.ringResponse(),
      groups: cluster.ringResponse().groups.map((group) => (group.groupId === 'g1' ? { ...ringEntry(cluster, 'g1'), leaderAddress: second.address } : group)),
    };
    const key = Array.from({ length: 100 }, (_, i) => `l${i}`).find((candidate) => cluster.ring.ownerOf(candidate) === 'g1');
    assert.ok(key);
    await router.put({ key, value: Buffer.from('x') });
    assert.equal(first.calls.put, 0);
    assert.equal(second.calls.put, 1);
  });
});

describe('recoveryFor', () => {
  const error = (code: status, entries: Record<string, string> = {}, details = 'x') => {
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(entries)) metadata.set(key, value);
    return new ConcordError(code, details, { metadata });
  };
  const REFUSED = 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:7103. Resolution note: ';

  it('retries writes only where the shard refused before proposing', () => {
    assert.equal(recoveryFor(error(status.FAILED_PRECONDITION, { 'concord-reason': 'WRONG_SHARD' }), 'write'), 'refresh-ring');
    assert.equal(recoveryFor(error(status.UNAVAILABLE, { 'concord-reason': 'NOT_LEADER', 'concord-leader': 'h:1' }), 'write'), 'follow-leader');
    assert.equal(recoveryFor(error(status.UNAVAILABLE, { 'concord-reason': 'NOT_LEADER' }), 'write'), 'next-replica');
    assert.equal(recoveryFor(error(status.UNAVAILABLE), 'write'), 'give-up');
    assert.equal(recoveryFor(error(status.DEADLINE_EXCEEDED), 'write'), 'give-up');
    assert.equal(recoveryFor(error(status.ABORTED, { 'concord-current-version': '3' }), 'write'), 'give-up');
  });

  it('retries a write that never reached a server (no connection), but not one whose connection broke in flight', () => {
    assert.equal(recoveryFor(error(status.UNAVAILABLE, {}, REFUSED), 'write'), 'next-replica');
    // The group dropped the proposal: it can never commit.
    assert.equal(recoveryFor(error(status.UNAVAILABLE, { 'concord-reason': 'PROPOSAL_DROPPED' }), 'write'), 'next-replica');
    // Its outcome is unknown: it may have been applied.
    assert.equal(recoveryFor(error(status.UNAVAILABLE, { 'concord-reason': 'OUTCOME_UNKNOWN' }), 'write'), 'give-up');
    assert.equal(recoveryFor(error(status.UNAVAILABLE, {}, 'Connection dropped'), 'write'), 'give-up');
    assert.equal(recoveryFor(error(status.UNAVAILABLE, {}, 'read ECONNRESET'), 'write'), 'give-up');
    // Only grpc-js's own wording counts: the same words inside another message prove nothing.
    assert.equal(recoveryFor(error(status.UNAVAILABLE, {}, `shard group g1 (replica 127.0.0.1:7103) is unavailable: ${REFUSED}`), 'write'), 'give-up');
    assert.equal(recoveryFor(error(status.DEADLINE_EXCEEDED, {}, REFUSED), 'write'), 'give-up');
  });

  it('retries reads on any unavailability but not on other failures', () => {
    assert.equal(recoveryFor(error(status.UNAVAILABLE), 'read'), 'next-replica');
    assert.equal(recoveryFor(error(status.FAILED_PRECONDITION), 'read'), 'give-up');
    assert.equal(recoveryFor(error(status.DEADLINE_EXCEEDED), 'read'), 'give-up');
    assert.equal(recoveryFor(error(status.INVALID_ARGUMENT), 'read'), 'give-up');
  });
});
