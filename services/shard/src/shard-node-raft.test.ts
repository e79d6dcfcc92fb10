// Three shard nodes of one group with the raft engine, in this process, each on its own port with
// its own data dir, driven through the generated ShardClient as the coordinator and the SDK call
// them. The cross-process version, with SIGKILL, is tests/src/raft-failover.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import type { ShardStatusResponse } from '@concord/proto/shard';
import { createLogger } from '@concord/runtime';
import type { ShardOptions } from './options.js';
import { startShardNode, type ShardNode } from './shard-node.js';
import { Shard, assertGrpcError, eventually, freePorts, keyOwnedBy, keysOwnedBy, testShardOptions } from './testing.js';

const logger = createLogger({ service: 'shard', level: 'silent' });
const MEMBERS = ['g1-0', 'g1-1', 'g1-2'];
/** Liveness bound for an election or a catch-up: a failure guard, not an expected duration. */
const LIVENESS_MS = 15_000;

interface Member {
  id: string;
  address: string;
  node: ShardNode | undefined;
  shard: Shard;
  /** The member's JSON log lines since its last start. */
  logLines: string[];
}

describe('a raft group of three shard nodes', () => {
  let root: string;
  let peers: Record<string, string>;
  const members = new Map<string, Member>();

  const options = (id: string): ShardOptions =>
    testShardOptions({
      engine: 'raft',
      memberId: id,
      listenPort: Number(peers[id]!.split(':')[1]),
      dataDir: join(root, id),
      peers,
      // Short ticks keep elections quick; a small snapshotEvery makes a member that was away catch up by snapshot.
      tickMs: 20,
      snapshotEvery: 100,
    });

  const member = (id: string): Member => {
    const found = members.get(id);
    if (found === undefined) throw new Error(`no member ${id}`);
    return found;
  };
  const running = (): Member[] => [...members.values()].filter((m) => m.node !== undefined);

  async function start(id: string): Promise<void> {
    const m = member(id);
    m.logLines = [];
    const memberLogger = createLogger({ service: 'shard', memberId: id, destination: { write: (line: string) => void m.logLines.push(line) } });
    m.node = await startShardNode(options(id), memberLogger);
  }

  async function stop(id: string): Promise<void> {
    const m = member(id);
    const node = m.node;
    m.node = undefined;
    await node?.stop();
  }

  /** The leader once exactly one running member says it leads and every running member names it, in the same term. */
  async function leader(): Promise<{ member: Member; status: ShardStatusResponse }> {
    return eventually(
      'one leader that every running member follows',
      async () => {
        const statuses = await Promise.all(running().map(async (m) => ({ member: m, status: await m.shard.status() })));
        const leaders = statuses.filter(({ status: s }) => s.role === 'LEADER');
        const only = leaders.length === 1 ? leaders[0]! : undefined;
        if (only === undefined) return undefined;
        const agreed = statuses.every(({ status: s }) => s.leaderAddress === only.member.address && s.term === only.status.term);
        return agreed ? only : undefined;
      },
      LIVENESS_MS,
    );
  }

  /** Waits until every running member has applied what the leader has committed. */
  async function caughtUp(leaderShard: Shard): Promise<number> {
    const { commitIndex } = await leaderShard.status();
    await eventually(
      `every member applying up to index ${commitIndex}`,
      async () => (await Promise.all(running().map((m) => m.shard.status()))).every((s) => s.appliedIndex >= commitIndex),
      LIVENESS_MS,
    );
    return commitIndex;
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'concord-shard-raft-'));
    const ports = await freePorts(MEMBERS.length);
    peers = Object.fromEntries(MEMBERS.map((id, i) => [id, `127.0.0.1:${ports[i]!}`]));
    for (const id of MEMBERS) members.set(id, { id, address: peers[id]!, node: undefined, shard: new Shard(peers[id]!), logLines: [] });
    await Promise.all(MEMBERS.map(start));
  });

  after(async () => {
    for (const m of members.values()) m.shard.close();
    await Promise.all(MEMBERS.map(stop));
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it('elects one leader; every member reports the raft engine, its role, the term and the leader address', async () => {
    const { member: chosen, status: leaderStatus } = await leader();
    assert.ok(leaderStatus.term >= 1, `term ${leaderStatus.term}`);
    for (const m of members.values()) {
      const reported = await m.shard.status();
      assert.equal(reported.groupId, 'g1');
      assert.equal(reported.memberId, m.id);
      assert.equal(reported.engine, 'raft');
      assert.equal(reported.role, m === chosen ? 'LEADER' : 'FOLLOWER');
      assert.equal(reported.leaderAddress, chosen.address);
      assert.equal(reported.ringEpoch, 1);
    }
  });

  it('answers a write on a follower with NOT_LEADER naming the leader, and writes nothing', async () => {
    const { member: chosen } = await leader();
    const follower = running().find((m) => m !== chosen)!;
    const key = keyOwnedBy('g1', 'follower-write/');
    const before = await chosen.shard.status();
    await assertGrpcError(
      follower.shard.put({ key, value: Buffer.from('x') }),
      status.UNAVAILABLE,
      new RegExp(`^NOT_LEADER: member ${follower.id} is not the leader of group g1; the leader is ${chosen.id} at ${chosen.address}$`),
      { 'concord-reason': 'NOT_LEADER', 'concord-leader': chosen.address },
    );
    await assertGrpcError(follower.shard.delete({ key }), status.UNAVAILABLE, /^NOT_LEADER/, { 'concord-leader': chosen.address });
    assert.equal((await chosen.shard.status()).commitIndex, before.commitIndex, 'the refused write reached the log');
    assert.equal((await chosen.shard.get({ key })).found, false);
  });

  it('replicates writes: a linearizable read on a follower sees the last acknowledged write, a serializable one once applied', async () => {
    const { member: chosen } = await leader();
    const followers = running().filter((m) => m !== chosen);
    const key = keyOwnedBy('g1', 'replicated/');
    const first = await chosen.shard.put({ key, value: Buffer.from('v1') });
    const second = await chosen.shard.put({ key, value: Buffer.from('v2') });
    assert.ok(second.version > first.version, `versions grow: ${first.version} then ${second.version}`);
    for (const follower of followers) {
      // Right after the acknowledgement: the read barrier makes the follower wait for the write.
      assert.deepEqual(await follower.shard.get({ key }), { found: true, value: Buffer.from('v2'), version: second.version }, follower.id);
    }
    await caughtUp(chosen.shard);
    for (const follower of followers) {
      const stale = await follower.shard.get({ key, consistency: ReadConsistency.READ_CONSISTENCY_SERIALIZABLE });
      assert.deepEqual(stale, { found: true, value: Buffer.from('v2'), version: second.version }, follower.id);
    }
    const deleted = await chosen.shard.delete({ key, expectedVersion: second.version });
    assert.deepEqual(deleted, { deleted: true, previousVersion: second.version });
    assert.equal((await followers[0]!.shard.get({ key })).found, false);
  });

  it('a leader that stops hands its leadership to a follower first; the old leader rejoins and catches up by snapshot', async () => {
    const { member: oldLeader, status: oldStatus } = await leader();
    const before = keyOwnedBy('g1', 'before-failover/');
    const written = await oldLeader.shard.put({ key: before, value: Buffer.from('kept') });
    // Writes in flight while the leader stops: each one is either acknowledged (it drains them
    // while it still hears its followers) or refused before anything was proposed.
    const inFlightKeys = keysOwnedBy('g1', 'in-flight/', 300);
    const puts = inFlightKeys.map((key) => oldLeader.shard.put({ key, value: Buffer.from(key) }));
    const inFlight = Promise.allSettled(puts);
    // Once the first is acknowledged the others have reached the leader, most of them.
    await Promise.race(puts).catch(() => undefined);
    await stop(oldLeader.id);
    const settled = await inFlight;
    for (const [i, outcome] of settled.entries()) {
      if (outcome.status === 'fulfilled') continue;
      const error = outcome.reason as { code?: number; metadata?: { get(key: string): unknown[] } };
      const refusedBeforeProposing = error.code === status.UNAVAILABLE && error.metadata?.get('concord-reason')[0] === 'NOT_LEADER';
      // A call that reached the server only after it stopped listening never got to the handler.
      const neverArrived = error.code === status.UNAVAILABLE && error.metadata?.get('concord-reason').length === 0;
      assert.ok(refusedBeforeProposing || neverArrived, `${inFlightKeys[i]}: ${String(outcome.reason)}`);
    }
    // A graceful stop hands the leadership over first: when stop() returned, a follower led already.
    const handedOver = oldLeader.logLines.find((line) => line.includes('"msg":"leadership handed over before stopping"'));
    assert.ok(handedOver !== undefined, `${oldLeader.id} should have handed its leadership over; its log:\n${oldLeader.logLines.join('')}`);
    const successor = member((JSON.parse(handedOver) as { to: string }).to);
    assert.equal((await successor.shard.status()).role, 'LEADER', `${successor.id} leads once ${oldLeader.id} stopped`);

    const { member: newLeader, status: newStatus } = await leader();
    assert.notEqual(newLeader.id, oldLeader.id);
    assert.ok(newStatus.term > oldStatus.term, `the new leader's term ${newStatus.term} is above ${oldStatus.term}`);
    assert.deepEqual(await newLeader.shard.get({ key: before }), { found: true, value: Buffer.from('kept'), version: written.version });
    for (const [i, outcome] of settled.entries()) {
      if (outcome.status !== 'fulfilled') continue;
      const got = await newLeader.shard.get({ key: inFlightKeys[i]! });
      assert.deepEqual({ found: got.found, version: got.version }, { found: true, version: outcome.value.version }, `${inFlightKeys[i]} was acknowledged`);
    }

    // More entries than snapshotEvery while the old leader is away: the survivors compact their
    // logs past what it has, so it can only catch up from a snapshot.
    const keys = keysOwnedBy('g1', 'while-away/', 250);
    for (let i = 0; i < keys.length; i += 50) {
      await Promise.all(keys.slice(i, i + 50).map((key) => newLeader.shard.put({ key, value: Buffer.from(key) })));
    }
    await start(oldLeader.id);
    const commitIndex = await caughtUp(newLeader.shard);
    const rejoined = await oldLeader.shard.status();
    assert.equal(rejoined.role, 'FOLLOWER');
    assert.equal(rejoined.leaderAddress, newLeader.address);
    assert.ok(rejoined.appliedIndex >= commitIndex);
    for (const key of [keys[0]!, keys[keys.length - 1]!]) {
      const local = await oldLeader.shard.get({ key, consistency: ReadConsistency.READ_CONSISTENCY_SERIALIZABLE });
      assert.deepEqual({ found: local.found, value: local.value.toString() }, { found: true, value: key }, key);
    }
    assert.equal(rejoined.keyCount, (await newLeader.shard.status()).keyCount);
    const installed = oldLeader.logLines.filter((line) => line.includes('"msg":"installed a snapshot from the leader"'));
    assert.equal(installed.length >= 1, true, `${oldLeader.id} should have installed a snapshot; its log:\n${oldLeader.logLines.join('')}`);
  });

  it('refuses to start the single engine on a data dir that holds Raft state', async () => {
    await assert.rejects(
      startShardNode(testShardOptions({ engine: 'single', dataDir: join(root, 'g1-0') }), logger),
      /holds data of the raft engine \(raft\).*run it with --engine raft/,
    );
  });
});

describe('a raft shard node started with --max-uncommitted-bytes', () => {
  let root: string;
  let node: ShardNode | undefined;
  let shard: Shard | undefined;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'concord-shard-uncommitted-'));
  });

  after(async () => {
    shard?.close();
    await node?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('sheds writes beyond the limit with PROPOSAL_DROPPED, writing nothing of them, and commits the rest', async () => {
    const [port] = await freePorts(1);
    const address = `127.0.0.1:${port!}`;
    // One byte: a leader with a write pending refuses every other until it commits (one is always accepted).
    node = await startShardNode(
      testShardOptions({ engine: 'raft', memberId: 'g1-0', listenPort: port!, dataDir: join(root, 'g1-0'), peers: { 'g1-0': address }, tickMs: 20, sync: true, maxUncommittedBytes: 1 }),
      logger,
    );
    shard = new Shard(address);
    await eventually('the one member to lead', async () => (await shard!.status()).role === 'LEADER', LIVENESS_MS);
    const keys = keysOwnedBy('g1', 'uncommitted/', 40);
    const value = Buffer.alloc(4096, 7);
    const outcomes = await Promise.allSettled(keys.map((key) => shard!.put({ key, value })));
    const refused = keys.filter((_, i) => outcomes[i]!.status === 'rejected');
    const written = keys.filter((_, i) => outcomes[i]!.status === 'fulfilled');
    assert.ok(written.length >= 1, 'the first write is accepted whatever the limit');
    assert.ok(refused.length >= 1, `40 concurrent writes of 4 KiB under a 1-byte limit: some must be refused (${written.length} written)`);
    for (const outcome of outcomes) {
      if (outcome.status === 'fulfilled') continue;
      const error = outcome.reason as { code: number; details: string; metadata: { get(name: string): unknown[] } };
      assert.equal(error.code, status.UNAVAILABLE);
      assert.match(error.details, /maxUncommittedBytes.*overloaded.*nothing was written/);
      assert.deepEqual(error.metadata.get('concord-reason'), ['PROPOSAL_DROPPED']);
    }
    for (const key of written) assert.equal((await shard.get({ key, consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE })).found, true, key);
    for (const key of refused) assert.equal((await shard.get({ key, consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE })).found, false, key);
  });
});
