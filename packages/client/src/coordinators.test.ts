// A client given several coordinators (`--addr a,b,c`, like etcd's --endpoints) moves a call that
// one of them cannot serve to the next, against fake coordinators over real gRPC: one whose port
// refuses connections, one without a meta leader, one whose connection breaks mid-call.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ConcordClient } from './concord-client.js';
import { parseCoordinatorAddresses } from './coordinators.js';
import { ConcordError } from './errors.js';
import { FakeCluster } from './testing/fake-cluster.js';
import { FakeCoordinator, NO_META_LEADER } from './testing/fake-coordinator.js';
import { TcpProxy } from './testing/tcp-proxy.js';

function rejection(check: (error: ConcordError) => void): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof ConcordError, String(error));
    check(error);
    return true;
  };
}

describe('parseCoordinatorAddresses', () => {
  it('takes a list or one comma-separated string, trimmed, without repeats', () => {
    assert.deepEqual(parseCoordinatorAddresses('127.0.0.1:7070'), ['127.0.0.1:7070']);
    assert.deepEqual(parseCoordinatorAddresses(' 127.0.0.1:7070, 127.0.0.1:7071,,127.0.0.1:7070 '), ['127.0.0.1:7070', '127.0.0.1:7071']);
    assert.deepEqual(parseCoordinatorAddresses(['a:1', 'b:2,c:3']), ['a:1', 'b:2', 'c:3']);
  });

  it('refuses an empty list, naming the setting', () => {
    assert.throws(() => parseCoordinatorAddresses(' , '), rejection((error) => {
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.match(error.message, /^address: /);
    }));
  });
});

describe('ConcordClient with several coordinators', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const step of cleanup.splice(0).reverse()) step();
  });

  async function shards(): Promise<FakeCluster> {
    const cluster = await FakeCluster.start({ groups: ['g1', 'g2'] });
    cleanup.push(() => cluster.stop());
    return cluster;
  }

  async function coordinator(cluster: FakeCluster): Promise<FakeCoordinator> {
    const started = await FakeCoordinator.start(cluster.ringResponse());
    cleanup.push(() => started.stop());
    return started;
  }

  /** An address nothing listens on any more. */
  async function deadAddress(cluster: FakeCluster): Promise<string> {
    const gone = await FakeCoordinator.start(cluster.ringResponse());
    gone.stop();
    return gone.address;
  }

  async function connect(address: string | string[], routing: 'direct' | 'coordinator' = 'direct'): Promise<ConcordClient> {
    const client = await ConcordClient.connect({ address, routing, deadlineMs: 5_000 });
    cleanup.push(() => client.close());
    return client;
  }

  it('skips a coordinator that refuses connections and one without a meta leader', async () => {
    const cluster = await shards();
    const dead = await deadAddress(cluster);
    const leaderless = await coordinator(cluster);
    const healthy = await coordinator(cluster);
    leaderless.script('getRing', NO_META_LEADER);
    leaderless.script('status', NO_META_LEADER);
    const client = await connect(`${dead},${leaderless.address},${healthy.address}`);
    assert.deepEqual(client.coordinatorAddresses, [dead, leaderless.address, healthy.address]);
    assert.equal(healthy.calls.getRing, 1, 'the ring came from the third');
    await client.put('k', 'v');
    assert.equal((await client.get('k')).value.toString(), 'v');
    // The coordinator that answered last is asked first next time.
    await client.status();
    assert.deepEqual([leaderless.calls.status, healthy.calls.status], [0, 1]);
  });

  it('with one coordinator that refuses connections, fails at once with its status', async () => {
    const cluster = await shards();
    const dead = await deadAddress(cluster);
    await assert.rejects(connect(dead), rejection((error) => {
      assert.equal(error.code, status.UNAVAILABLE);
      assert.match(error.details, /^No connection established/);
      assert.equal(error.attempts, 1);
    }));
  });

  it('keeps asking while the meta group elects a leader, until one answers', async () => {
    const cluster = await shards();
    const only = await coordinator(cluster);
    only.script('getRing', NO_META_LEADER, NO_META_LEADER, NO_META_LEADER);
    const client = await connect(only.address);
    assert.equal(only.calls.getRing, 4);
    only.script('status', NO_META_LEADER);
    await client.status();
    assert.equal(only.calls.status, 2);
  });

  it('coordinator routing: a write that reached no coordinator, or was refused for want of a meta leader, goes to the next and is applied once', async () => {
    const cluster = await shards();
    const dead = await deadAddress(cluster);
    const leaderless = await coordinator(cluster);
    const healthy = await coordinator(cluster);
    leaderless.script('put', NO_META_LEADER);
    const client = await connect([dead, leaderless.address, healthy.address], 'coordinator');
    const { version } = await client.put('k', 'v');
    assert.equal(version, 1);
    assert.deepEqual([leaderless.calls.put, healthy.calls.put], [1, 1]);
    assert.equal(leaderless.data.size, 0);
  });

  it('coordinator routing: a write whose connection broke mid-call is not sent again; a read is', async () => {
    const cluster = await shards();
    const first = await coordinator(cluster);
    const second = await coordinator(cluster);
    const proxy = await TcpProxy.start(first.address);
    cleanup.push(() => proxy.stop());
    const client = await connect([proxy.address, second.address], 'coordinator');

    first.held.add('put');
    let arrived = first.nextHeldCall();
    const write = client.put('k', 'v');
    await arrived;
    proxy.drop('reset');
    await assert.rejects(write, rejection((error) => {
      assert.equal(error.code, status.UNAVAILABLE);
      assert.equal(error.attempts, 1);
    }));
    assert.equal(second.calls.put, 0, 'it may have been applied: the caller decides');

    first.held.add('get');
    arrived = first.nextHeldCall();
    const read = client.get('k');
    await arrived;
    proxy.drop('close');
    assert.equal((await read).found, false);
    assert.equal(second.calls.get, 1);
  });

  it('does not move a call that any coordinator would answer the same way', async () => {
    const cluster = await shards();
    const first = await coordinator(cluster);
    const second = await coordinator(cluster);
    first.script('put', { code: status.UNAVAILABLE, details: 'shard group g1 (replica 127.0.0.1:7101) is unavailable: Connection dropped' });
    first.script('get', { code: status.INVALID_ARGUMENT, details: 'key: must not be empty' });
    const client = await connect([first.address, second.address], 'coordinator');
    await assert.rejects(client.put('k', 'v'), rejection((error) => assert.equal(error.code, status.UNAVAILABLE)));
    await assert.rejects(client.get('k'), rejection((error) => assert.equal(error.code, status.INVALID_ARGUMENT)));
    assert.deepEqual([second.calls.put, second.calls.get], [0, 0]);
  });
});
