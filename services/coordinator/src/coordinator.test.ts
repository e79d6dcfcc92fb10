// The coordinator in front of real shard replicas (the `single` engine, in this process): every
// public service, end to end over gRPC.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { credentials, status, type ServiceError as GrpcError } from '@grpc/grpc-js';
import { ConcordClient } from '@concord/client';
import { ClusterClient, MemberRole, type GetRingResponse, type StatusResponse } from '@concord/proto/cluster';
import { ReadConsistency, type KeyValue } from '@concord/proto/common';
import { KVClient, type DeleteResponse, type GetResponse, type PutResponse, type ScanRequest, type ScanResponse } from '@concord/proto/kv';
import { MapReduceClient, type SubmitResponse } from '@concord/proto/mapreduce';
import { TxnClient, type CommitResponse } from '@concord/proto/txn';
import { HashRing, RING_HASH } from '@concord/ring';
import { CLIENT_CHANNEL_OPTIONS, createLogger } from '@concord/runtime';
import { startShardNode, type ShardNode } from '@concord/shard';
import { startCoordinator, type CoordinatorNode } from './coordinator-node.js';
import { compileCoordinatorOptions } from './options.js';
import { failsWith } from './testing.js';

const GROUPS = ['g1', 'g2', 'g3'];
const logger = createLogger({ service: 'coordinator-test', level: 'silent' });

type Callback<Res> = (error: GrpcError | null, response: Res) => void;

/** Runs one unary call of a generated client; rejects with the grpc-js error. */
function call<Res>(invoke: (callback: Callback<Res>) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((error, response) => (error === null ? resolve(response) : reject(error)));
  });
}

/** The messages of a server stream; rejects with the grpc-js error. */
async function messages<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const message of stream) all.push(message);
  return all;
}

const scanRequest = (overrides: Partial<ScanRequest> = {}): ScanRequest => ({
  prefix: '',
  startKey: '',
  endKey: '',
  limit: 0,
  consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED,
  ...overrides,
});

describe('coordinator with three shard groups', () => {
  let dataRoot: string;
  const shards: ShardNode[] = [];
  let coordinator: CoordinatorNode;
  let kv: KVClient;
  let cluster: ClusterClient;
  /** What this file has written and not deleted, to check Status's key counts against. */
  const live = new Set<string>();

  const put = async (key: string, value: string | Buffer, expectedVersion?: number) => {
    const response = await call((callback: Callback<PutResponse>) => kv.put({ key, value: Buffer.from(value), expectedVersion }, callback));
    live.add(key);
    return response;
  };
  const get = (key: string) => call((callback: Callback<GetResponse>) => kv.get({ key, consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED }, callback));
  const del = async (key: string, expectedVersion?: number) => {
    const response = await call((callback: Callback<DeleteResponse>) => kv.delete({ key, expectedVersion }, callback));
    live.delete(key);
    return response;
  };
  const scanKeys = async (request: Partial<ScanRequest>) => (await messages<ScanResponse>(kv.scan(scanRequest(request)))).flatMap((message) => message.kvs.map((kv) => kv.key));

  before(async () => {
    dataRoot = await mkdtemp(join(tmpdir(), 'concord-coordinator-test-'));
    for (const groupId of GROUPS) {
      shards.push(
        await startShardNode(
          {
            groupId,
            memberId: `${groupId}-0`,
            listenHost: '127.0.0.1',
            listenPort: 0,
            dataDir: join(dataRoot, groupId),
            ringGroups: GROUPS,
            ringVnodes: 128,
            ringEpoch: 1,
            engine: 'single',
            peers: {},
            join: false,
            bootstrapCheckTimeoutMs: 5_000,
            forceBootstrap: false,
            advertisedAddress: '',
            tickMs: 50,
            electionTicks: 10,
            heartbeatTicks: 1,
            readMode: 'safe',
            sync: false,
            snapshotEvery: 10_000,
            maxUncommittedBytes: 64 * 1024 * 1024,
            snapshotLogRatio: 0.5,
            snapshotRatioMinBytes: 4 * 1024 * 1024,
            logLevel: 'silent',
          },
          logger,
        ),
      );
    }
    const groupsFlag = shards.map((shard, i) => `${GROUPS[i]}=${shard.address}`).join(',');
    coordinator = await startCoordinator(compileCoordinatorOptions({ argv: ['--engine', 'config', '--listen', '127.0.0.1:0', '--groups', groupsFlag], env: {} }), logger);
    kv = new KVClient(coordinator.address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
    cluster = new ClusterClient(coordinator.address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
  });

  after(async () => {
    kv?.close();
    cluster?.close();
    await coordinator?.stop();
    for (const shard of shards) await shard.stop();
    await rm(dataRoot, { recursive: true, force: true });
  });

  it('puts, gets and deletes keys, spread over every group', async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `basic/${i}`);
    const versions = new Map<string, number>();
    for (const key of keys) versions.set(key, (await put(key, `value of ${key}`)).version);
    for (const key of keys) {
      const read = await get(key);
      assert.equal(read.found, true);
      assert.equal(read.value.toString(), `value of ${key}`);
      assert.equal(read.version, versions.get(key));
    }
    const ring = new HashRing({ epoch: 1, vnodesPerGroup: 128, groups: GROUPS });
    assert.deepEqual(new Set(keys.map((key) => ring.ownerOf(key))), new Set(GROUPS));

    const removed = await del('basic/0');
    assert.deepEqual(removed, { deleted: true, previousVersion: versions.get('basic/0') });
    assert.deepEqual(await get('basic/0'), { found: false, value: Buffer.alloc(0), version: 0 });
    assert.deepEqual(await del('basic/0'), { deleted: false, previousVersion: 0 });
  });

  it('compare-and-set: ABORTED with the current version and no routing metadata, nothing written', async () => {
    const created = await put('cas/counter', '1', 0);
    const error = await failsWith(put('cas/counter', '2', 0), status.ABORTED, /./);
    assert.deepEqual(error.metadata.get('concord-current-version'), [String(created.version)]);
    assert.deepEqual(error.metadata.get('concord-leader'), []);
    assert.deepEqual(error.metadata.get('concord-reason'), []);
    assert.equal((await get('cas/counter')).value.toString(), '1');

    const updated = await put('cas/counter', '2', created.version);
    assert.ok(updated.version > created.version);
    await failsWith(del('cas/counter', created.version), status.ABORTED, /./);
    assert.equal((await get('cas/counter')).found, true);
    assert.deepEqual(await del('cas/counter', updated.version), { deleted: true, previousVersion: updated.version });
  });

  it('scans across groups in key order, in batches, up to the limit', async () => {
    const keys = Array.from({ length: 300 }, (_, i) => `scan/${String(i).padStart(4, '0')}`);
    for (const key of [...keys].reverse()) await put(key, key);
    const batches = await messages<ScanResponse>(kv.scan(scanRequest({ prefix: 'scan/' })));
    assert.ok(batches.length >= 2, 'more keys than one batch holds');
    assert.ok(batches.every((batch) => batch.kvs.length > 0));
    assert.deepEqual(batches.flatMap((batch) => batch.kvs.map((kv: KeyValue) => kv.key)), keys);
    assert.deepEqual(await scanKeys({ prefix: 'scan/', limit: 10 }), keys.slice(0, 10));
    assert.deepEqual(await scanKeys({ startKey: 'scan/0100', endKey: 'scan/0105' }), keys.slice(100, 105));
    assert.deepEqual(await scanKeys({ prefix: 'nothing-here/' }), []);
  });

  it('rejects bad input with INVALID_ARGUMENT naming the field, and writes nothing', async () => {
    await failsWith(put('', 'x'), status.INVALID_ARGUMENT, /^key: must not be empty/);
    await failsWith(put('k'.repeat(5000), 'x'), status.INVALID_ARGUMENT, /^key: must be at most 4096 bytes of UTF-8 \(got 5000\)/);
    await failsWith(put('bad/big', Buffer.alloc(1024 * 1024 + 1)), status.INVALID_ARGUMENT, /^value: must be at most 1048576 bytes \(got 1048577\)/);
    await failsWith(get(''), status.INVALID_ARGUMENT, /^key: must not be empty/);
    await failsWith(
      call((callback: Callback<GetResponse>) => kv.get({ key: 'bad/consistency', consistency: 9 as ReadConsistency }, callback)),
      status.INVALID_ARGUMENT,
      /^consistency: unknown value 9/,
    );
    await failsWith(del(''), status.INVALID_ARGUMENT, /^key: must not be empty/);
    await failsWith(scanKeys({ prefix: 'a', startKey: 'b' }), status.INVALID_ARGUMENT, /^prefix: must not be combined/);
    await failsWith(scanKeys({ startKey: 'b', endKey: 'a' }), status.INVALID_ARGUMENT, /^start_key: must be less than end_key/);
    await failsWith(scanKeys({ limit: 10001 }), status.INVALID_ARGUMENT, /^limit: must be between 1 and 10000/);
    live.delete('');
    live.delete('k'.repeat(5000));
    live.delete('bad/big');
    assert.equal((await get('bad/big')).found, false);
    assert.deepEqual(await scanKeys({ prefix: 'bad/' }), []);
    // An empty value is a valid value.
    await put('bad/empty-value-is-fine', '');
    assert.equal((await get('bad/empty-value-is-fine')).found, true);
  });

  it('Status lists every group and member, with key counts summing to what was written', async () => {
    const report: StatusResponse = await call((callback: Callback<StatusResponse>) => cluster.status({}, callback));
    assert.equal(report.ringEpoch, 1);
    assert.deepEqual(report.groups.map((group) => group.groupId), GROUPS);
    for (const [i, group] of report.groups.entries()) {
      assert.equal(group.members.length, 1);
      const member = group.members[0];
      assert.ok(member);
      assert.equal(member.memberId, `${GROUPS[i]}-0`);
      assert.equal(member.address, shards[i]?.address);
      assert.equal(member.role, MemberRole.MEMBER_ROLE_LEADER);
      assert.equal(member.engine, 'single');
      assert.equal(member.error, '');
      assert.ok(member.appliedIndex > 0);
      assert.equal(group.leaderId, member.memberId);
      assert.ok(group.ringShare > 0 && group.ringShare < 1);
    }
    const total = report.groups.reduce((sum, group) => sum + group.keyCount, 0);
    assert.equal(total, live.size);
    assert.equal((await scanKeys({ limit: 10000 })).length, live.size);
    assert.ok(Math.abs(report.groups.reduce((sum, group) => sum + group.ringShare, 0) - 1) < 1e-9);
    assert.deepEqual(report.meta?.members.map((member) => [member.memberId, member.address, member.role, member.engine]), [
      ['coordinator-0', coordinator.address, MemberRole.MEMBER_ROLE_LEADER, 'config'],
    ]);
    assert.equal(report.meta?.leaderId, 'coordinator-0');
  });

  it('GetRing publishes the configured ring, with leaders once known', async () => {
    const ring: GetRingResponse = await call((callback: Callback<GetRingResponse>) => cluster.getRing({}, callback));
    assert.equal(ring.epoch, 1);
    assert.equal(ring.vnodesPerGroup, 128);
    assert.equal(ring.hash, RING_HASH);
    assert.deepEqual(
      ring.groups.map((group) => [group.groupId, group.addresses]),
      GROUPS.map((groupId, i) => [groupId, [shards[i]?.address]]),
    );
    // Earlier calls went through these leaders, so the coordinator knows them.
    assert.deepEqual(
      ring.groups.map((group) => group.leaderAddress),
      shards.map((shard) => shard.address),
    );
  });

  it('reports an unreachable replica without holding up the others', async () => {
    const deadAddress = '127.0.0.1:1';
    const groupsFlag = shards.map((shard, i) => `${GROUPS[i]}=${shard.address}${i === 0 ? `|${deadAddress}` : ''}`).join(',');
    const second = await startCoordinator(compileCoordinatorOptions({ argv: ['--engine', 'config', '--listen', '127.0.0.1:0', '--groups', groupsFlag], env: {} }), logger);
    const client = new ClusterClient(second.address, credentials.createInsecure(), CLIENT_CHANNEL_OPTIONS);
    try {
      const started = Date.now();
      const report: StatusResponse = await call((callback: Callback<StatusResponse>) => client.status({}, callback));
      assert.ok(Date.now() - started < 3000);
      const g1 = report.groups[0];
      assert.ok(g1);
      assert.equal(g1.members.length, 2);
      const dead = g1.members.find((member) => member.address === deadAddress);
      assert.equal(dead?.role, MemberRole.MEMBER_ROLE_UNREACHABLE);
      assert.match(dead?.error ?? '', /^(UNAVAILABLE|DEADLINE_EXCEEDED): /);
      assert.equal(g1.leaderId, 'g1-0');
      assert.ok(g1.keyCount > 0);
    } finally {
      client.close();
      await second.stop();
    }
  });

  it('answers Txn and MapReduce with UNIMPLEMENTED, saying what is missing', async () => {
    const txn = new TxnClient(coordinator.address, credentials.createInsecure());
    const mapReduce = new MapReduceClient(coordinator.address, credentials.createInsecure());
    try {
      await failsWith(call((callback: Callback<CommitResponse>) => txn.commit({ conditions: [], ops: [] }, callback)), status.UNIMPLEMENTED, /transactions are not built yet/);
      await failsWith(call((callback: Callback<SubmitResponse>) => mapReduce.submit({ spec: undefined }, callback)), status.UNIMPLEMENTED, /MapReduce jobs are not built yet.*Submit/);
      await failsWith(messages(mapReduce.watch({ jobId: 'j1' })), status.UNIMPLEMENTED, /MapReduce jobs are not built yet.*Watch/);
    } finally {
      txn.close();
      mapReduce.close();
    }
  });

  it('serves the SDK in both routing modes', async () => {
    const direct = await ConcordClient.connect({ address: coordinator.address });
    const routed = await ConcordClient.connect({ address: coordinator.address, routing: 'coordinator' });
    try {
      const { version } = await direct.put('sdk/a', 'from direct');
      const read = await routed.get('sdk/a');
      assert.equal(read.value.toString(), 'from direct');
      assert.equal(read.version, version);
      await routed.put('sdk/b', new Uint8Array([7]));
      live.add('sdk/a');
      live.add('sdk/b');
      const viaDirect: string[] = [];
      for await (const kv of direct.scan({ prefix: 'sdk/' })) viaDirect.push(kv.key);
      const viaCoordinator: string[] = [];
      for await (const kv of routed.scan({ prefix: 'sdk/' })) viaCoordinator.push(kv.key);
      assert.deepEqual(viaDirect, ['sdk/a', 'sdk/b']);
      assert.deepEqual(viaCoordinator, viaDirect);
      await assert.rejects(routed.put('sdk/a', 'x', { expectedVersion: 0 }), (error: Error & { code?: number }) => error.code === status.ABORTED);
      await assert.rejects(routed.put('', 'x'), (error: Error) => error.message === 'key: must not be empty');
      assert.equal((await routed.status()).groups.length, 3);
      assert.deepEqual((await routed.ring()).groups.map((group) => group.groupId), GROUPS);
    } finally {
      direct.close();
      routed.close();
    }
  });
});
