import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { MemberRole } from '@concord/proto/cluster';
import { ConcordClient } from './concord-client.js';
import { ConcordError } from './errors.js';
import { FakeCluster } from './testing/fake-cluster.js';

describe('ConcordClient (direct routing)', () => {
  let cluster: FakeCluster;
  let client: ConcordClient;

  before(async () => {
    cluster = await FakeCluster.start({ groups: ['g1', 'g2', 'g3'] });
    client = await ConcordClient.connect({ address: cluster.clusterAddress });
  });
  after(() => {
    client.close();
    cluster.stop();
  });

  it('loads the ring from the coordinator once on connect', () => {
    assert.equal(cluster.getRingCalls, 1);
  });

  it('puts, gets and deletes keys on the shards that own them', async () => {
    const { version } = await client.put('greeting', 'hello');
    assert.ok(cluster.group(cluster.ring.ownerOf('greeting')).data.has('greeting'));
    const read = await client.get('greeting');
    assert.deepEqual({ ...read, value: read.value.toString() }, { found: true, value: 'hello', version });
    await client.put('bytes', new Uint8Array([1, 2, 3]));
    assert.deepEqual([...(await client.get('bytes', { consistency: 'serializable' })).value], [1, 2, 3]);
    assert.deepEqual(await client.delete('greeting'), { deleted: true, previousVersion: version });
    const gone = await client.get('greeting');
    assert.equal(gone.found, false);
    assert.equal(gone.version, 0);
    assert.equal(gone.value.length, 0);
  });

  it('reports a failed compare-and-set as ABORTED with the current version', async () => {
    const { version } = await client.put('counter', '1', { expectedVersion: 0 });
    await assert.rejects(client.put('counter', '2', { expectedVersion: 0 }), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.equal(error.code, status.ABORTED);
      assert.equal(error.codeName, 'ABORTED');
      assert.equal(error.currentVersion, version);
      return true;
    });
    const next = await client.put('counter', '2', { expectedVersion: version });
    assert.ok(next.version > version);
  });

  it('scans in key order across groups', async () => {
    const keys = Array.from({ length: 25 }, (_, i) => `scan/${String(i).padStart(2, '0')}`);
    for (const key of keys) await client.put(key, key);
    const seen: string[] = [];
    for await (const kv of client.scan({ prefix: 'scan/', limit: 12 })) seen.push(kv.key);
    assert.deepEqual(seen, keys.slice(0, 12));
    const range: string[] = [];
    for await (const kv of client.scan({ startKey: 'scan/20', endKey: 'scan/99' })) range.push(kv.value.toString());
    assert.deepEqual(range, keys.slice(20));
  });

  it('serves status and ring from the coordinator', async () => {
    const ring = await client.ring();
    assert.deepEqual(ring, cluster.ringResponse());
    const clusterStatus = await client.status();
    assert.deepEqual(clusterStatus.groups.map((group) => group.groupId), ['g1', 'g2', 'g3']);
    assert.equal(clusterStatus.groups[0]?.members[0]?.role, MemberRole.MEMBER_ROLE_LEADER);
  });
});

describe('ConcordClient.connect', () => {
  it('fails with UNAVAILABLE when no coordinator answers', async () => {
    const cluster = await FakeCluster.start({ groups: ['g1'] });
    const address = cluster.clusterAddress;
    cluster.stop();
    await assert.rejects(ConcordClient.connect({ address, deadlineMs: 2000 }), (error: unknown) => {
      assert.ok(error instanceof ConcordError);
      assert.ok(error.code === status.UNAVAILABLE || error.code === status.DEADLINE_EXCEEDED, error.codeName);
      return true;
    });
  });
});
