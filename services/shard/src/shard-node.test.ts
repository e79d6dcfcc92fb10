// A single-engine shard node in this process on port 0 with a temporary data dir, driven through
// the generated ShardClient exactly as the coordinator and the SDK call it. The raft engine's
// three-member group is in shard-node-raft.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status, type ServiceError as GrpcServiceError } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import { createLogger } from '@concord/runtime';
import type { ShardOptions } from './options.js';
import { startShardNode, type ShardNode } from './shard-node.js';
import { Shard, assertGrpcError, keyOwnedBy, keysOf, keysOwnedBy, testShardOptions } from './testing.js';

const logger = createLogger({ service: 'shard', level: 'silent' });

describe('shard node over gRPC (single engine)', () => {
  let dataDir: string;
  let node: ShardNode;
  let shard: Shard;
  // A small snapshotEvery, so the restart test recovers from a snapshot plus a log tail.
  const options = (): ShardOptions => testShardOptions({ dataDir, engine: 'single', snapshotEvery: 50 });

  async function start(): Promise<void> {
    node = await startShardNode(options(), logger);
    shard = new Shard(node.address);
  }

  async function stop(): Promise<void> {
    shard.close();
    await node.stop();
  }

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'concord-shard-test-'));
    await start();
  });

  after(async () => {
    await stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('writes and reads a key; its version is the log index of the write', async () => {
    const key = keyOwnedBy('g1', 'basic/');
    const first = await shard.put({ key, value: Buffer.from('hello') });
    assert.equal((await shard.status()).appliedIndex, first.version);
    const second = await shard.put({ key, value: Buffer.from('world') });
    assert.equal(second.version, first.version + 1);
    assert.deepEqual(await shard.get({ key }), { found: true, value: Buffer.from('world'), version: second.version });
    const stale = await shard.get({ key, consistency: ReadConsistency.READ_CONSISTENCY_SERIALIZABLE });
    assert.equal(stale.version, second.version);
    assert.deepEqual(await shard.get({ key: keyOwnedBy('g1', 'never-written/') }), { found: false, value: Buffer.alloc(0), version: 0 });
  });

  it('compares and sets: a matching version writes, a mismatch is ABORTED and changes nothing', async () => {
    const key = keyOwnedBy('g1', 'cas/');
    const created = await shard.put({ key, value: Buffer.from('v1'), expectedVersion: 0 });
    await assertGrpcError(
      shard.put({ key, value: Buffer.from('other'), expectedVersion: 0 }),
      status.ABORTED,
      new RegExp(`^expected_version: key "${key}" has version ${created.version}, not 0$`),
      { 'concord-current-version': String(created.version) },
    );
    await assertGrpcError(shard.put({ key, value: Buffer.from('other'), expectedVersion: created.version + 100 }), status.ABORTED, /expected_version/);
    assert.deepEqual(await shard.get({ key }), { found: true, value: Buffer.from('v1'), version: created.version });
    const updated = await shard.put({ key, value: Buffer.from('v2'), expectedVersion: created.version });
    assert.ok(updated.version > created.version);
    await assertGrpcError(shard.delete({ key, expectedVersion: created.version }), status.ABORTED, /expected_version/, {
      'concord-current-version': String(updated.version),
    });
    assert.equal((await shard.get({ key })).found, true);
  });

  it('deletes a key and reports its previous version', async () => {
    const key = keyOwnedBy('g1', 'delete/');
    const written = await shard.put({ key, value: Buffer.from('x') });
    assert.deepEqual(await shard.delete({ key, expectedVersion: written.version }), { deleted: true, previousVersion: written.version });
    assert.equal((await shard.get({ key })).found, false);
    assert.deepEqual(await shard.delete({ key }), { deleted: false, previousVersion: 0 });
  });

  it('scans a prefix or range in key order, honouring the limit, in batches of at most 256', async () => {
    const keys = keysOwnedBy('g1', 'scan/', 600);
    for (let i = 0; i < keys.length; i += 100) {
      await Promise.all(keys.slice(i, i + 100).map((key) => shard.put({ key, value: Buffer.from(key) })));
    }
    const all = await shard.scan({ prefix: 'scan/' });
    assert.deepEqual(keysOf(all), keys);
    assert.deepEqual(all.map((batch) => batch.kvs.length), [256, 256, 88]);
    assert.ok(all.every((batch) => batch.kvs.every((kv) => kv.value.toString() === kv.key && kv.version > 0)));

    const limited = await shard.scan({ prefix: 'scan/', limit: 300, consistency: ReadConsistency.READ_CONSISTENCY_SERIALIZABLE });
    assert.deepEqual(keysOf(limited), keys.slice(0, 300));
    assert.deepEqual(limited.map((batch) => batch.kvs.length), [256, 44]);

    const range = await shard.scan({ startKey: keys[10]!, endKey: keys[20]! });
    assert.deepEqual(keysOf(range), keys.slice(10, 20));
    const openEnded = await shard.scan({ startKey: keys[590]!, limit: 5 });
    assert.deepEqual(keysOf(openEnded), keys.slice(590, 595));
    assert.deepEqual(await shard.scan({ prefix: 'scan/none' }), []);
  });

  it('caps a scan batch near 1 MiB of data', async () => {
    const keys = keysOwnedBy('g1', 'big/', 3);
    for (const key of keys) await shard.put({ key, value: Buffer.alloc(600 * 1024, 7) });
    const batches = await shard.scan({ prefix: 'big/' });
    assert.deepEqual(batches.map((batch) => batch.kvs.length), [1, 1, 1]);
    assert.deepEqual(keysOf(batches), keys);
  });

  it('rejects bad input with INVALID_ARGUMENT naming the field, changing nothing', async () => {
    const key = keyOwnedBy('g1', 'valid/');
    const written = await shard.put({ key, value: Buffer.from('keep') });
    const before = await shard.status();
    const longKey = 'k'.repeat(4097);
    // Each call starts when its turn comes: a rejection with no handler yet would fail the test.
    const cases: [string, () => Promise<unknown>, RegExp][] = [
      ['empty key (get)', () => shard.get({ key: '' }), /^key: must not be empty/],
      ['empty key (put)', () => shard.put({ key: '', value: Buffer.from('x') }), /^key: must not be empty/],
      ['empty key (delete)', () => shard.delete({ key: '' }), /^key: must not be empty/],
      ['4097-byte key', () => shard.put({ key: longKey, value: Buffer.from('x') }), /^key: must be at most 4096 bytes.*got 4097/],
      ['4097-byte key (get)', () => shard.get({ key: longKey }), /^key: must be at most 4096 bytes/],
      ['1 MiB + 1 value', () => shard.put({ key, value: Buffer.alloc(1024 * 1024 + 1) }), /^value: must be at most 1048576 bytes.*got 1048577/],
      ['limit 10001', () => shard.scan({ prefix: 'scan/', limit: 10001 }), /^limit: must be between 1 and 10000/],
      ['unknown consistency (get)', () => shard.get({ key, consistency: 7 as ReadConsistency }), /^consistency: unknown value 7/],
      ['unknown consistency (scan)', () => shard.scan({ consistency: 7 as ReadConsistency }), /^consistency: unknown value 7/],
      ['prefix with a range', () => shard.scan({ prefix: 'a', startKey: 'b' }), /^prefix: must not be combined with start_key\/end_key/],
      ['start >= end', () => shard.scan({ startKey: 'm', endKey: 'm' }), /^start_key: must be less than end_key/],
      ['start > end', () => shard.scan({ startKey: 'z', endKey: 'a' }), /^start_key: must be less than end_key/],
      ['4097-byte prefix', () => shard.scan({ prefix: longKey }), /^prefix: must be at most 4096 bytes/],
    ];
    for (const [name, call, message] of cases) {
      await assert.rejects(call(), (error: GrpcServiceError) => {
        assert.equal(error.code, status.INVALID_ARGUMENT, `${name}: got ${error.code} ${error.details}`);
        assert.match(error.details, message, name);
        return true;
      });
    }
    const afterwards = await shard.status();
    assert.equal(afterwards.appliedIndex, before.appliedIndex);
    assert.equal(afterwards.keyCount, before.keyCount);
    assert.deepEqual(await shard.get({ key }), { found: true, value: Buffer.from('keep'), version: written.version });
  });

  it('answers WRONG_SHARD for a key of another group or a stale ring epoch', async () => {
    const foreign = keyOwnedBy('g2', 'foreign/');
    const mine = keyOwnedBy('g1', 'mine/');
    const before = await shard.status();
    const wrongShard = { 'concord-reason': 'WRONG_SHARD', 'concord-ring-epoch': '1' };
    const belongs = new RegExp(`^WRONG_SHARD: key "${foreign}" belongs to group g2 at ring epoch 1; refresh the ring$`);
    await assertGrpcError(shard.put({ key: foreign, value: Buffer.from('x') }), status.FAILED_PRECONDITION, belongs, wrongShard);
    await assertGrpcError(shard.get({ key: foreign }), status.FAILED_PRECONDITION, belongs, wrongShard);
    await assertGrpcError(shard.delete({ key: foreign }), status.FAILED_PRECONDITION, belongs, wrongShard);
    await assertGrpcError(shard.get({ key: foreign, ringEpoch: 1 }), status.FAILED_PRECONDITION, belongs, wrongShard);

    const staleEpoch = /^WRONG_SHARD: .*routed with ring epoch 2, but group g1 is at ring epoch 1; refresh the ring$/;
    await assertGrpcError(shard.put({ key: mine, value: Buffer.from('x'), ringEpoch: 2 }), status.FAILED_PRECONDITION, staleEpoch, wrongShard);
    await assertGrpcError(shard.get({ key: mine, ringEpoch: 2 }), status.FAILED_PRECONDITION, staleEpoch, wrongShard);
    await assertGrpcError(shard.scan({ prefix: 'scan/', ringEpoch: 2 }), status.FAILED_PRECONDITION, staleEpoch, wrongShard);
    const afterwards = await shard.status();
    assert.equal(afterwards.appliedIndex, before.appliedIndex);
    assert.equal((await shard.get({ key: mine, ringEpoch: 1 })).found, false);

    // Bad input is reported before ownership: the caller has to fix the request either way.
    await assertGrpcError(shard.put({ key: foreign, value: Buffer.alloc(1024 * 1024 + 1) }), status.INVALID_ARGUMENT, /^value:/);
  });

  it('reports its status', async () => {
    const reported = await shard.status();
    assert.equal(reported.groupId, 'g1');
    assert.equal(reported.memberId, 'g1-0');
    assert.equal(reported.role, 'LEADER');
    assert.equal(reported.engine, 'single');
    assert.equal(reported.ringEpoch, 1);
    assert.equal(reported.leaderAddress, node.address);
    assert.equal(reported.commitIndex, reported.appliedIndex);
    assert.ok(reported.keyCount >= 600);
  });

  it('keeps every key, value and version across a restart on the same data dir', async () => {
    const key = keyOwnedBy('g1', 'restart/');
    const written = await shard.put({ key, value: Buffer.from('durable') });
    const deleted = keyOwnedBy('g1', 'restart-deleted/');
    await shard.put({ key: deleted, value: Buffer.from('gone') });
    await shard.delete({ key: deleted });
    const beforeScan = await shard.scan({ limit: 10000 });
    const beforeStatus = await shard.status();

    await stop();
    await start();

    const afterStatus = await shard.status();
    assert.equal(afterStatus.appliedIndex, beforeStatus.appliedIndex);
    assert.equal(afterStatus.keyCount, beforeStatus.keyCount);
    assert.deepEqual(await shard.get({ key }), { found: true, value: Buffer.from('durable'), version: written.version });
    assert.equal((await shard.get({ key: deleted })).found, false);
    assert.deepEqual(keysOf(await shard.scan({ limit: 10000 })), keysOf(beforeScan));
    const next = await shard.put({ key, value: Buffer.from('after restart') });
    assert.equal(next.version, beforeStatus.appliedIndex + 1);
  });
});
