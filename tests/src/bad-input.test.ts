// Bad input gets a clear status naming what to fix, and changes nothing (DESIGN.md, "Guarantees
// that tests must defend"). Requests go through the coordinator's public KV service with the raw
// generated client, so the server's own validation is what is tested; malformed configuration is
// given to the real process entry points.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import type { ClusterClient } from '@concord/proto/cluster';
import type { KVClient, ScanRequest } from '@concord/proto/kv';
import type { TxnClient } from '@concord/proto/txn';
import { freePorts, startLocalCluster, type LocalCluster } from './harness/cluster.js';
import { describeResult, runCommand } from './harness/command.js';
import { clusterClient, collect, describeError, failure, kvClient, txnClient, unary } from './harness/grpc.js';
import { nodeBinary } from './harness/paths.js';
import { fetchStatus } from './harness/verify.js';

const DEADLINE_MS = 10_000;
const MAX_KEY_BYTES = 4096;
const MAX_VALUE_BYTES = 1024 * 1024;
const MAX_SCAN_LIMIT = 10_000;
/** A key that exists before every bad request, so "changes nothing" can be checked on it. */
const EXISTING_KEY = 'bad-input/existing';
const EXISTING_VALUE = Buffer.from('original value');

/** What a request must not change: every key with its value and version, and every group leader's commit index. */
interface StoreState {
  keys: string[];
  commitIndexes: string[];
}

function scanRequest(fields: Partial<ScanRequest>): ScanRequest {
  return { prefix: '', startKey: '', endKey: '', limit: 0, consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED, ...fields };
}

/** Asserts `error` is `code` and that its message contains every one of `mentions`. */
function assertStatus(error: ServiceError, code: grpcStatus, mentions: readonly RegExp[], what: string): void {
  assert.equal(error.code, code, `${what}: expected ${grpcStatus[code]}, got ${describeError(error)}`);
  for (const mention of mentions) {
    assert.match(error.details, mention, `${what}: the message should say what to fix (${mention}), got ${JSON.stringify(error.details)}`);
  }
}

describe('bad input through the coordinator: a clear status, and nothing changes', () => {
  let cluster: LocalCluster;
  let kv: KVClient;
  let clusterApi: ClusterClient;
  let txn: TxnClient;
  let existingVersion: number;

  before(async () => {
    cluster = await startLocalCluster({ groups: ['g1', 'g2', 'g3'] });
    kv = kvClient(cluster.coordinatorAddress);
    clusterApi = clusterClient(cluster.coordinatorAddress);
    txn = txnClient(cluster.coordinatorAddress);
    const put = await unary(kv.put.bind(kv), { key: EXISTING_KEY, value: EXISTING_VALUE }, DEADLINE_MS);
    existingVersion = put.version;
    assert.ok(existingVersion > 0, `a Put returns a version > 0, got ${existingVersion}`);
  });

  after(async () => {
    for (const client of [kv, clusterApi, txn]) client?.close();
    await cluster?.stop();
  });

  async function storeState(): Promise<StoreState> {
    const batches = await collect(kv.scan(scanRequest({ limit: MAX_SCAN_LIMIT }), { deadline: Date.now() + DEADLINE_MS }));
    const keys = batches
      .flatMap((batch) => batch.kvs)
      .map((entry) => `${entry.key.slice(0, 64)}… (${entry.key.length} chars) v${entry.version} sha256:${createHash('sha256').update(entry.value).digest('hex').slice(0, 16)}`);
    const status = await fetchStatus(clusterApi);
    // The leader's: a follower learns a commit index a heartbeat later, so its own may still move
    // after an earlier test's write; the leader's moves only with a new log entry.
    const commitIndexes = status.groups.map((group) => {
      const leader = group.members.find((member) => member.memberId === group.leaderId && group.leaderId !== '');
      return `${group.groupId}: ${leader === undefined ? 'no leader' : `${leader.memberId} ${leader.commitIndex}`}`;
    });
    return { keys, commitIndexes };
  }

  /**
   * Runs `badRequests` and asserts that the stored keys, and unless `logMayGrow` the groups' logs,
   * are as before. Invalid arguments are refused before anything is proposed; a failed
   * compare-and-set may be decided in the log, where the current version is known.
   */
  async function expectNothingChanged(badRequests: () => Promise<void>, { logMayGrow = false } = {}): Promise<void> {
    const before = await storeState();
    await badRequests();
    const after = await storeState();
    assert.deepEqual(after.keys, before.keys, 'a rejected request changed the stored keys');
    if (!logMayGrow) assert.deepEqual(after.commitIndexes, before.commitIndexes, 'a rejected request reached a group log');
    const existing = await unary(kv.get.bind(kv), { key: EXISTING_KEY, consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED }, DEADLINE_MS);
    assert.deepEqual({ found: existing.found, value: existing.value.toString(), version: existing.version }, { found: true, value: EXISTING_VALUE.toString(), version: existingVersion });
  }

  async function rejectedKey(key: string, mentions: readonly RegExp[], label: string): Promise<void> {
    const value = Buffer.from('v');
    const calls = {
      Put: unary(kv.put.bind(kv), { key, value }, DEADLINE_MS),
      Get: unary(kv.get.bind(kv), { key, consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED }, DEADLINE_MS),
      Delete: unary(kv.delete.bind(kv), { key }, DEADLINE_MS),
    };
    for (const [method, call] of Object.entries(calls)) {
      const error = await failure(call, `${method} with ${label}`);
      assertStatus(error, grpcStatus.INVALID_ARGUMENT, mentions, `${method} with ${label}`);
    }
  }

  it('an empty key is INVALID_ARGUMENT naming "key" (Put, Get, Delete)', async () => {
    await expectNothingChanged(() => rejectedKey('', [/\bkey\b/], 'an empty key'));
  });

  it('a key of 4097 bytes is INVALID_ARGUMENT naming "key" and the 4096-byte limit, counted in UTF-8 bytes', async () => {
    const ascii = 'k'.repeat(MAX_KEY_BYTES + 1);
    // 2049 characters but 4097 bytes: the limit is on the UTF-8 encoding, not on characters.
    const multiByte = 'é'.repeat(MAX_KEY_BYTES / 2) + 'a';
    assert.equal(Buffer.byteLength(multiByte), MAX_KEY_BYTES + 1);
    await expectNothingChanged(async () => {
      await rejectedKey(ascii, [/\bkey\b/, /\b4,?096\b/], 'a 4097-byte ASCII key');
      await rejectedKey(multiByte, [/\bkey\b/, /\b4,?096\b/], 'a 4097-byte key of 2049 characters');
    });
  });

  it('a key of exactly 4096 bytes is accepted', async () => {
    const key = 'b'.repeat(MAX_KEY_BYTES);
    await unary(kv.put.bind(kv), { key, value: Buffer.from('at the limit') }, DEADLINE_MS);
    const got = await unary(kv.get.bind(kv), { key, consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED }, DEADLINE_MS);
    assert.equal(got.value.toString(), 'at the limit');
  });

  it('a value of 1 MiB + 1 is INVALID_ARGUMENT naming "value" and the 1048576-byte limit; the key keeps its value', async () => {
    await expectNothingChanged(async () => {
      const error = await failure(unary(kv.put.bind(kv), { key: EXISTING_KEY, value: Buffer.alloc(MAX_VALUE_BYTES + 1, 0x61) }, DEADLINE_MS), 'Put of 1 MiB + 1');
      assertStatus(error, grpcStatus.INVALID_ARGUMENT, [/\bvalue\b/, /\b1,?048,?576\b/], 'Put of 1 MiB + 1');
    });
  });

  it('a value of exactly 1 MiB is accepted and reads back', async () => {
    const value = Buffer.alloc(MAX_VALUE_BYTES, 0x62);
    await unary(kv.put.bind(kv), { key: 'bad-input/one-mib', value }, DEADLINE_MS);
    const got = await unary(kv.get.bind(kv), { key: 'bad-input/one-mib', consistency: ReadConsistency.READ_CONSISTENCY_UNSPECIFIED }, DEADLINE_MS);
    assert.ok(got.found && got.value.equals(value), `the 1 MiB value reads back (got ${got.value.length} bytes)`);
  });

  it('a scan limit of 10001 is INVALID_ARGUMENT naming "limit" and 10000; 10000 is accepted', async () => {
    await expectNothingChanged(async () => {
      const stream = kv.scan(scanRequest({ limit: MAX_SCAN_LIMIT + 1 }), { deadline: Date.now() + DEADLINE_MS });
      const error = await failure(collect(stream), 'Scan with limit 10001');
      assertStatus(error, grpcStatus.INVALID_ARGUMENT, [/\blimit\b/, /\b10,?000\b/], 'Scan with limit 10001');
    });
    const batches = await collect(kv.scan(scanRequest({ limit: MAX_SCAN_LIMIT }), { deadline: Date.now() + DEADLINE_MS }));
    assert.ok(batches.flatMap((batch) => batch.kvs).some((entry) => entry.key === EXISTING_KEY), 'a scan with limit 10000 lists the existing key');
  });

  it('an unknown consistency level (7) is INVALID_ARGUMENT naming "consistency" (Get, Scan)', async () => {
    const unknown = 7 as ReadConsistency;
    await expectNothingChanged(async () => {
      const get = await failure(unary(kv.get.bind(kv), { key: EXISTING_KEY, consistency: unknown }, DEADLINE_MS), 'Get with consistency 7');
      assertStatus(get, grpcStatus.INVALID_ARGUMENT, [/\bconsistency\b/], 'Get with consistency 7');
      const scan = await failure(collect(kv.scan(scanRequest({ consistency: unknown }), { deadline: Date.now() + DEADLINE_MS })), 'Scan with consistency 7');
      assertStatus(scan, grpcStatus.INVALID_ARGUMENT, [/\bconsistency\b/], 'Scan with consistency 7');
    });
  });

  it('a scan with both prefix and start_key is INVALID_ARGUMENT naming "prefix"', async () => {
    await expectNothingChanged(async () => {
      const stream = kv.scan(scanRequest({ prefix: 'bad-input/', startKey: 'bad-input/a' }), { deadline: Date.now() + DEADLINE_MS });
      const error = await failure(collect(stream), 'Scan with prefix and start_key');
      assertStatus(error, grpcStatus.INVALID_ARGUMENT, [/\bprefix\b/], 'Scan with prefix and start_key');
    });
  });

  it('a Put or Delete with a wrong expected_version is ABORTED and the key keeps its value and version', async () => {
    await expectNothingChanged(async () => {
      const wrong = existingVersion + 1000;
      const put = await failure(unary(kv.put.bind(kv), { key: EXISTING_KEY, value: Buffer.from('overwritten'), expectedVersion: wrong }, DEADLINE_MS), 'Put with a wrong expected_version');
      assertStatus(put, grpcStatus.ABORTED, [], 'Put with a wrong expected_version');
      const mustNotExist = await failure(unary(kv.put.bind(kv), { key: EXISTING_KEY, value: Buffer.from('overwritten'), expectedVersion: 0 }, DEADLINE_MS), 'Put with expected_version 0 on an existing key');
      assertStatus(mustNotExist, grpcStatus.ABORTED, [], 'Put with expected_version 0 on an existing key');
      const del = await failure(unary(kv.delete.bind(kv), { key: EXISTING_KEY, expectedVersion: wrong }, DEADLINE_MS), 'Delete with a wrong expected_version');
      assertStatus(del, grpcStatus.ABORTED, [], 'Delete with a wrong expected_version');
    }, { logMayGrow: true });
  });

  it('Txn.Commit is UNIMPLEMENTED and applies nothing', async () => {
    await expectNothingChanged(async () => {
      const request = { conditions: [], ops: [{ key: 'bad-input/txn', op: { $case: 'put' as const, value: Buffer.from('txn') } }] };
      const error = await failure(unary(txn.commit.bind(txn), request, DEADLINE_MS), 'Txn.Commit');
      assertStatus(error, grpcStatus.UNIMPLEMENTED, [], 'Txn.Commit');
    });
  });
});

describe('malformed configuration: the process exits 2 with a message naming the setting', { concurrency: 3 }, () => {
  let dataDir: string;
  let shardAddress: string;
  let coordinatorAddress: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'concord-config-test-'));
    const [shardPort, coordinatorPort] = await freePorts(2);
    shardAddress = `127.0.0.1:${shardPort!}`;
    coordinatorAddress = `127.0.0.1:${coordinatorPort!}`;
  });
  after(async () => {
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  });

  // Every case is otherwise valid (the shard a Raft group of one on a free port, the coordinator
  // on port 0 with the config engine, or a meta group of one on a free port with raft): a process
  // that accepts the bad setting starts serving, and is stopped and reported.
  const shardFlags = (): Record<string, string> => ({
    '--group-id': 'g1',
    '--member-id': 'g1-0',
    '--listen': shardAddress,
    '--peers': `g1-0=${shardAddress}`,
    '--data-dir': join(dataDir, 'g1'),
    '--ring-groups': 'g1,g2,g3',
    '--ring-vnodes': '128',
    '--ring-epoch': '1',
  });
  const coordinatorFlags = (): Record<string, string> => ({
    '--engine': 'config',
    '--listen': '127.0.0.1:0',
    '--groups': 'g1=127.0.0.1:1,g2=127.0.0.1:2,g3=127.0.0.1:3',
    '--ring-vnodes': '128',
    '--ring-epoch': '1',
  });
  const raftCoordinatorFlags = (): Record<string, string> => ({
    '--engine': 'raft',
    '--member-id': 'coordinator-0',
    '--listen': coordinatorAddress,
    '--peers': `coordinator-0=${coordinatorAddress}`,
    '--data-dir': join(dataDir, 'coordinator-0'),
    '--groups': 'g1=127.0.0.1:1,g2=127.0.0.1:2,g3=127.0.0.1:3',
  });
  const cases: { role: 'shard' | 'coordinator'; raft?: true; change: Record<string, string | null>; names: string; what: string }[] = [
    { role: 'coordinator', change: { '--groups': null }, names: '--groups', what: 'without --groups' },
    { role: 'coordinator', change: { '--groups': 'g1' }, names: '--groups', what: 'with a group without an address' },
    { role: 'coordinator', change: { '--ring-vnodes': 'abc' }, names: '--ring-vnodes', what: 'with --ring-vnodes abc' },
    { role: 'coordinator', change: { '--listen': 'nonsense' }, names: '--listen', what: 'with --listen nonsense' },
    { role: 'coordinator', change: { '--bogus-flag': '1' }, names: '--bogus-flag', what: 'with an unknown flag' },
    { role: 'coordinator', raft: true, change: { '--listen': '127.0.0.1:0' }, names: '--listen', what: 'with the raft engine on port 0' },
    { role: 'coordinator', raft: true, change: { '--peers': 'coordinator-0=127.0.0.1:1' }, names: '--listen', what: 'listening on another port than its --peers entry' },
    { role: 'coordinator', raft: true, change: { '--peers': 'coordinator-1=127.0.0.1:1,coordinator-2=127.0.0.1:2' }, names: '--peers', what: 'with --peers that leave this coordinator out' },
    { role: 'coordinator', raft: true, change: { '--data-dir': null }, names: '--data-dir', what: 'with the raft engine and no --data-dir' },
    { role: 'shard', change: { '--group-id': null }, names: '--group-id', what: 'without --group-id' },
    { role: 'shard', change: { '--ring-vnodes': 'abc' }, names: '--ring-vnodes', what: 'with --ring-vnodes abc' },
    { role: 'shard', change: { '--listen': 'nonsense' }, names: '--listen', what: 'with --listen nonsense' },
    { role: 'shard', change: { '--bogus-flag': '1' }, names: '--bogus-flag', what: 'with an unknown flag' },
    { role: 'shard', change: { '--peers': null }, names: '--peers', what: 'with the raft engine and no --peers' },
    { role: 'shard', change: { '--peers': 'g1-1=127.0.0.1:1,g1-2=127.0.0.1:2' }, names: '--peers', what: 'with --peers that leave this replica out' },
    { role: 'shard', change: { '--listen': '127.0.0.1:0' }, names: '--listen', what: 'with the raft engine on port 0' },
    { role: 'shard', change: { '--heartbeat-ticks': '10' }, names: '--heartbeat-ticks', what: 'with --heartbeat-ticks not below --election-ticks' },
    { role: 'shard', change: { '--engine': 'paxos' }, names: '--engine', what: 'with an unknown engine' },
  ];
  for (const { role, raft, change, names, what } of cases) {
    it(`${role} ${what}: exit 2, stderr names ${names}`, async () => {
      const base = role === 'shard' ? shardFlags() : raft === true ? raftCoordinatorFlags() : coordinatorFlags();
      const flags: Record<string, string | null> = { ...base, ...change };
      const args = Object.entries(flags).flatMap(([flag, value]) => (value === null ? [] : [flag, value]));
      const result = await runCommand(nodeBinary, [`services/${role}/dist/main.js`, ...args], { timeoutMs: 20_000, stopWhen: /"msg":"serving"/ });
      const shown = `${role} ${args.join(' ')} ${describeResult(result)}`;
      assert.equal(result.code, 2, `expected exit code 2: ${shown}`);
      assert.ok(result.stderr.includes(names), `stderr should name ${names}: ${shown}`);
    });
  }
});
