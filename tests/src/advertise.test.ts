// --advertise with real processes: every process listens on 127.0.0.1:<port> but advertises
// localhost:<port>, as a Kubernetes pod listens on 0.0.0.0 and is reached by its DNS name. The
// shard replicas are a Raft group (their --peers entries are the advertised addresses); the
// coordinator runs the config engine, whose only source for its own address is --advertise.
// Defends: what each process tells others about where it is — Raft leader addresses in
// Shard.Status, NOT_LEADER hints, the ring's leader addresses, the coordinator in Cluster.Status,
// the "serving" line — is the advertised address, never the listen address; and clients
// following those addresses get through.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ConcordClient, METADATA_LEADER, METADATA_REASON, REASON_NOT_LEADER } from '@concord/client';
import { ClusterClient } from '@concord/proto/cluster';
import { ShardClient } from '@concord/proto/shard';
import { CLIENT_CHANNEL_OPTIONS } from '@concord/runtime';
import { startLocalCluster } from './harness/cluster.js';
import { failure, trailer, unary } from './harness/grpc.js';

const GROUP = 'g1';
const ADVERTISED_HOST = 'localhost';
const DEADLINE_MS = 5_000;

test('--advertise: peers, hints, the ring and status name the advertised address, not the listen address', { timeout: 90_000 }, async () => {
  const cluster = await startLocalCluster({ groups: [GROUP], coordinators: 1, advertiseHost: ADVERTISED_HOST });
  const clients: { close(): void }[] = [];
  try {
    const replicas = cluster.shardAddresses(GROUP);
    for (const address of replicas) assert.match(address, /^localhost:\d+$/);
    // The harness also checked each "serving" line against these addresses when it started them.
    for (const name of cluster.processNames) {
      const line = cluster.outputOf(name).find((each) => each.includes('"msg":"serving"'));
      assert.match(line ?? '', /"address":"localhost:\d+"/, `${name} announces its advertised address`);
    }

    // Raft: every replica names the leader by its advertised address.
    const leader = await cluster.leaderOf(GROUP);
    assert.ok(replicas.includes(leader.status.leaderAddress), `leader address ${leader.status.leaderAddress} is one of ${replicas.join(', ')}`);
    assert.equal(leader.status.leaderAddress, leader.address);

    // A follower's NOT_LEADER hint names it too.
    const followerAddress = replicas.find((address) => address !== leader.address)!;
    const follower = new ShardClient(followerAddress, cluster.credentials, CLIENT_CHANNEL_OPTIONS);
    clients.push(follower);
    const refused = await failure(
      unary(follower.put.bind(follower), { ringEpoch: cluster.ringEpoch, key: 'advertise:hint', value: Buffer.from('x') }, DEADLINE_MS),
      'Shard.Put on a follower',
    );
    assert.equal(refused.code, grpc.status.UNAVAILABLE);
    assert.equal(trailer(refused, METADATA_REASON), REASON_NOT_LEADER);
    assert.equal(trailer(refused, METADATA_LEADER), leader.address);

    // The coordinator: its own address in Cluster.Status is the advertised one, and so are the
    // group's members and leader in Status and in the ring it serves.
    const coordinator = new ClusterClient(cluster.coordinatorAddress, cluster.credentials, CLIENT_CHANNEL_OPTIONS);
    clients.push(coordinator);
    const status = await unary(coordinator.status.bind(coordinator), {}, DEADLINE_MS);
    assert.deepEqual(status.meta?.members.map((member) => member.address), [cluster.coordinatorAddress]);
    assert.match(cluster.coordinatorAddress, /^localhost:\d+$/);
    const group = status.groups.find((each) => each.groupId === GROUP);
    assert.deepEqual(group?.members.map((member) => member.address), replicas);
    const ring = await unary(coordinator.getRing.bind(coordinator), {}, DEADLINE_MS);
    const routed = ring.groups.find((each) => each.groupId === GROUP);
    assert.deepEqual(routed?.addresses, replicas);
    assert.ok(routed?.leaderAddress === '' || replicas.includes(routed?.leaderAddress ?? ''), `ring leader ${routed?.leaderAddress}`);

    // Clients get through on those addresses: the SDK routes to the leader it is told about.
    const client = await ConcordClient.connect({ address: cluster.coordinatorAddress });
    clients.push(client);
    const { version } = await client.put('advertise:key', 'reached by name');
    assert.deepEqual(await client.get('advertise:key'), { found: true, value: Buffer.from('reached by name'), version });
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
});

test('--advertise with the single engine: the replica names the advertised address as its own', { timeout: 60_000 }, async () => {
  const cluster = await startLocalCluster({ groups: [GROUP], engine: 'single', coordinators: 1, advertiseHost: ADVERTISED_HOST });
  try {
    // Without --advertise a single-engine replica can only name the address it is bound to.
    const [address] = cluster.shardAddresses(GROUP);
    assert.match(address ?? '', /^localhost:\d+$/);
    const status = await cluster.shardStatus(cluster.shardNames(GROUP)[0]!);
    assert.equal(status.leaderAddress, address);
  } finally {
    await cluster.stop();
  }
});
