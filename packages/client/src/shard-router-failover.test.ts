// The router during a leader failover, against fake replicas over real gRPC: a dead replica refuses
// connections for real (its server is gone), and a connection that breaks mid-call is broken for
// real (a TCP proxy in front of the replica). Defends the rule of `recoveryFor`: a call that never
// reached a server may go to another replica, writes included; a call whose connection broke in
// flight may have been applied, and only a read is repeated.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import { ConcordError, connectionLost, failedBeforeSending } from './errors.js';
import { ShardRouter } from './shard-router.js';
import { FakeCluster, type FakeReplica } from './testing/fake-cluster.js';
import { TcpProxy } from './testing/tcp-proxy.js';

const LINEARIZABLE = ReadConsistency.READ_CONSISTENCY_LINEARIZABLE;

function rejection(check: (error: ConcordError) => void): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof ConcordError, String(error));
    check(error);
    return true;
  };
}

describe('ShardRouter when a leader dies', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const step of cleanup.splice(0).reverse()) step();
  });

  /**
   * One group of three fake replicas whose leader r2 just died: its port refuses connections, and
   * the followers r0 and r1 still name it in their NOT_LEADER answers, as Raft followers do until
   * an election timeout passes. The ring names no leader, so the router starts at r0.
   */
  async function afterLeaderDeath(): Promise<{ cluster: FakeCluster; router: ShardRouter; r0: FakeReplica; r1: FakeReplica; dead: string }> {
    const cluster = await FakeCluster.start({ groups: ['g1'], replicasPerGroup: 3 });
    cleanup.push(() => cluster.stop());
    const [r0, r1, r2] = cluster.group('g1').replicas;
    assert.ok(r0 && r1 && r2);
    const dead = r2.address;
    for (const follower of [r0, r1]) {
      follower.leader = false;
      follower.leaderHint = dead;
    }
    r2.stop();
    const router = new ShardRouter({ ringSource: cluster.ringSource, backoffMs: 1, maxBackoffMs: 5 });
    cleanup.push(() => router.close());
    return { cluster, router, r0, r1, dead };
  }

  it('grpc-js reports a refused connection as UNAVAILABLE "No connection established": the call was never sent', async () => {
    const { dead } = await afterLeaderDeath();
    const router = new ShardRouter({
      ringSource: async () => ({ epoch: 1, vnodesPerGroup: 16, hash: 'sha256-be64', groups: [{ groupId: 'g1', addresses: [dead], leaderAddress: '' }] }),
      maxAttempts: 1,
    });
    cleanup.push(() => router.close());
    await assert.rejects(
      router.put({ key: 'k', value: Buffer.from('x') }),
      rejection((error) => {
        assert.equal(error.code, status.UNAVAILABLE);
        assert.match(error.message, /^shard group g1 \(replica .*\) is unavailable: No connection established\. Last error: .*ECONNREFUSED/);
        const received = error.cause as ConcordError;
        assert.ok(failedBeforeSending(received), 'the status as received counts as never sent');
        assert.ok(!connectionLost(received));
      }),
    );
  });

  it('a NOT_LEADER hint naming the dead leader: the write goes on to the new leader and is applied once', async () => {
    const { cluster, router, r0, r1 } = await afterLeaderDeath();
    r1.leader = true;
    const { version } = await router.put({ key: 'during-election', value: Buffer.from('x') });
    assert.equal(version, 1, 'applied exactly once');
    assert.equal(cluster.group('g1').data.get('during-election')?.value.toString(), 'x');
    // r0 named the dead leader, which refused the connection; asked again, r0 named it again, and
    // that hint was not followed a second time; r1 took the write.
    assert.equal(r0.calls.put, 2);
    assert.equal(r1.calls.put, 1);
    assert.equal(router.knownLeader('g1'), r1.address);
  });

  it('the cached leader died: the call goes on to the others, and later calls go straight to the new leader', async () => {
    const { cluster, router, r0, r1, dead } = await afterLeaderDeath();
    (await router.routingTable()).groups.get('g1')!.confirmLeader(dead);
    r1.leader = true;
    await router.put({ key: 'k1', value: Buffer.from('1') });
    assert.deepEqual([r0.calls.put, r1.calls.put], [1, 1]);
    await router.put({ key: 'k2', value: Buffer.from('2') });
    await router.get({ key: 'k1', consistency: LINEARIZABLE });
    assert.deepEqual([r0.calls.put, r1.calls.put, r0.calls.get, r1.calls.get], [1, 2, 0, 1]);
    assert.equal(cluster.group('g1').data.size, 2);
  });

  it('reads take the same path', async () => {
    const { router, r0, r1 } = await afterLeaderDeath();
    r1.leader = true;
    assert.equal((await router.get({ key: 'k', consistency: LINEARIZABLE })).found, false);
    assert.deepEqual([r0.calls.get, r1.calls.get], [2, 1]);
  });

  it('gives up within the attempt budget while no live replica leads', async () => {
    const { router, r0, r1 } = await afterLeaderDeath();
    await assert.rejects(
      router.put({ key: 'stuck', value: Buffer.from('x') }),
      rejection((error) => {
        assert.equal(error.code, status.UNAVAILABLE);
        assert.equal(error.reason, 'NOT_LEADER');
        assert.equal(error.attempts, 5);
      }),
    );
    // One attempt went to the dead leader (the first hint); the other four reached a survivor.
    assert.deepEqual([r0.calls.put, r1.calls.put], [3, 1]);
  });
});

describe('ShardRouter when a connection breaks mid-call', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const step of cleanup.splice(0).reverse()) step();
  });

  /** g1's leader r0 is reached through a proxy; its calls of `method` arrive and are never answered. */
  async function heldBehindProxy(): Promise<{ cluster: FakeCluster; router: ShardRouter; proxy: TcpProxy; r0: FakeReplica; r1: FakeReplica }> {
    const cluster = await FakeCluster.start({ groups: ['g1'], replicasPerGroup: 2 });
    cleanup.push(() => cluster.stop());
    const [r0, r1] = cluster.group('g1').replicas;
    assert.ok(r0 && r1);
    const proxy = await TcpProxy.start(r0.address);
    cleanup.push(() => proxy.stop());
    const ring = cluster.ringResponse();
    const router = new ShardRouter({
      ringSource: async () => ({ ...ring, groups: [{ groupId: 'g1', addresses: [proxy.address, r1.address], leaderAddress: proxy.address }] }),
      backoffMs: 1,
      maxBackoffMs: 5,
    });
    cleanup.push(() => router.close());
    return { cluster, router, proxy, r0, r1 };
  }

  for (const how of ['close', 'reset'] as const) {
    it(`a write is not repeated when the connection ${how === 'close' ? 'closes' : 'is reset'} with it in flight: it may have been applied`, async () => {
      const { router, proxy, r0, r1 } = await heldBehindProxy();
      r0.held.add('put');
      const arrived = r0.nextHeldCall();
      const write = router.put({ key: 'k', value: Buffer.from('x') });
      await arrived;
      proxy.drop(how);
      await assert.rejects(
        write,
        rejection((error) => {
          assert.equal(error.code, status.UNAVAILABLE);
          assert.equal(error.attempts, 1);
          assert.ok(connectionLost(error.cause as ConcordError), `a lost connection: ${error.message}`);
          assert.ok(!failedBeforeSending(error.cause as ConcordError));
        }),
      );
      assert.equal(r0.calls.put, 1);
      assert.equal(r1.calls.put, 0, 'not sent anywhere else');
    });
  }

  it('a read in the same situation is repeated on another replica', async () => {
    const { router, proxy, r0, r1 } = await heldBehindProxy();
    r1.leader = true;
    r0.held.add('get');
    const arrived = r0.nextHeldCall();
    const read = router.get({ key: 'k', consistency: LINEARIZABLE });
    await arrived;
    proxy.drop('close');
    assert.equal((await read).found, false);
    assert.equal(r1.calls.get, 1);
  });
});
