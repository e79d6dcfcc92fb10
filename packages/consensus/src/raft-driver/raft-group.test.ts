import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ProposeOutcome } from '../types.js';
import { TestCluster, eventually, type TestMember } from './testing.js';

function command(text: string): Uint8Array {
  return Buffer.from(text, 'utf8');
}

/** Proposes on whoever leads now, retrying (bounded) through elections; returns the applied outcome. */
async function proposeOnLeader(cluster: TestCluster, text: string): Promise<Extract<ProposeOutcome<string>, { kind: 'applied' }>> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const leader = await cluster.leader();
    const outcome = await leader.group.propose(command(text));
    if (outcome.kind === 'applied') return outcome;
    assert.notEqual(outcome.kind, 'unknown', `proposal ${text} has an unknown outcome: retrying could apply it twice`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`could not get ${text} applied`);
}

function appliedEverywhere(members: TestMember[], index: number): boolean {
  return members.every((member) => member.group.status().appliedIndex >= index);
}

describe('RaftGroup over gRPC', () => {
  let cluster: TestCluster | undefined;

  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it('elects a leader and applies proposals in the same order with the same results everywhere', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c']);
    const leader = await cluster.leader();
    const outcomes = [];
    for (let i = 1; i <= 20; i++) outcomes.push(await leader.group.propose(command(`k${i % 3}=v${i}`)));
    const concurrent = await Promise.all(Array.from({ length: 30 }, (_, i) => leader.group.propose(command(`c${i}=x`))));
    for (const outcome of [...outcomes, ...concurrent]) assert.equal(outcome.kind, 'applied');

    const last = Math.max(...[...outcomes, ...concurrent].map((o) => (o.kind === 'applied' ? o.index : 0)));
    const members = cluster.running();
    await eventually('every replica to apply everything', () => appliedEverywhere(members, last));
    const reference = leader.machine.history;
    assert.equal(reference.length, 50);
    for (const member of members) {
      assert.deepEqual(member.machine.history, reference, `history of ${member.id}`);
      assert.deepEqual([...member.machine.values], [...leader.machine.values], `state of ${member.id}`);
    }
    // Results follow from the order: k1 was written at i=1, 4, 7…; the write at i=4 saw "v1".
    const fourth = outcomes[3];
    assert.ok(fourth?.kind === 'applied' && fourth.result.endsWith(':v1'), `unexpected result ${JSON.stringify(fourth)}`);

    const status = leader.group.status();
    assert.equal(status.engine, 'raft');
    assert.equal(status.role, 'leader');
    assert.equal(status.leaderAddress, leader.address);
    assert.deepEqual(status.members.map((m) => [m.memberId, m.address, m.voter]).sort(), members.map((m) => [m.id, m.address, true]).sort());
  });

  it('answers not_leader with the leader address on a follower, and serves read barriers', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c']);
    const leader = await cluster.leader();
    const applied = await proposeOnLeader(cluster, 'x=1');
    const follower = cluster.running().find((member) => member.id !== leader.id)!;
    assert.deepEqual(await follower.group.propose(command('x=2')), { kind: 'not_leader', leaderId: leader.id, leaderAddress: leader.address });

    const onLeader = await leader.group.readBarrier();
    assert.equal(onLeader.kind, 'ready');
    assert.ok(onLeader.kind === 'ready' && onLeader.index >= applied.index);
    // A follower forwards the read index to the leader and waits until it has applied that far.
    const onFollower = await follower.group.readBarrier();
    assert.equal(onFollower.kind, 'ready');
    assert.ok(onFollower.kind === 'ready' && follower.group.status().appliedIndex >= onFollower.index);
    assert.equal(follower.machine.values.get('x'), '1');
  });

  it('batches concurrent read barriers into few ReadIndex rounds, each covering every write acknowledged before its callers', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c']);
    const leader = await cluster.leader();
    const follower = cluster.running().find((member) => member.id !== leader.id)!;
    const written = await Promise.all(Array.from({ length: 20 }, (_, i) => proposeOnLeader(cluster!, `w${i}=${i}`)));
    const lastWritten = Math.max(...written.map((outcome) => outcome.index));

    const roundsBefore = leader.group.readIndexRounds;
    const first = Array.from({ length: 200 }, () => leader.group.readBarrier());
    // A write acknowledged while the first barriers' round may still be in flight: the barriers
    // called after it must not be served by that round.
    const between = await proposeOnLeader(cluster, 'between=1');
    const second = Array.from({ length: 50 }, () => leader.group.readBarrier());
    const onFollower = Array.from({ length: 50 }, () => follower.group.readBarrier());

    for (const outcome of await Promise.all(first)) {
      assert.ok(outcome.kind === 'ready' && outcome.index >= lastWritten, `first batch: ${JSON.stringify(outcome)}`);
    }
    for (const outcome of await Promise.all([...second, ...onFollower])) {
      assert.ok(outcome.kind === 'ready' && outcome.index >= between.index, `after the write: ${JSON.stringify(outcome)}`);
    }
    const rounds = leader.group.readIndexRounds - roundsBefore;
    assert.ok(rounds >= 1 && rounds <= 20, `250 barriers on the leader took ${rounds} ReadIndex rounds`);
    assert.ok(follower.group.readIndexRounds <= 20, `50 barriers on a follower took ${follower.group.readIndexRounds} rounds`);
    assert.ok(follower.group.status().appliedIndex >= between.index);
  });

  it('elects a new leader when the leader stops, keeps every acknowledged write, and lets the old leader catch up', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c']);
    const first = await cluster.leader();
    const acknowledged: string[] = [];
    for (let i = 0; i < 10; i++) {
      await proposeOnLeader(cluster, `before${i}=${i}`);
      acknowledged.push(`before${i}=${i}`);
    }

    await cluster.stop(first.id);
    // Generous bound: the defaults aim at well under 2 s; the assertion only guards against "never".
    const second = await cluster.leader(10_000);
    assert.notEqual(second.id, first.id);
    // Every acknowledged write is applied everywhere: at once on the new leader once its no-op
    // committed them, and on the other member as soon as it learns that commit index, with the new
    // leader's next append or heartbeat (RaftCoreOptions.piggybackCommit).
    for (const member of cluster.running()) {
      await eventually(`${member.id} to apply every acknowledged write`, () =>
        acknowledged.every((text) => member.machine.history.includes(text)),
      ).catch(() => assert.fail(`${member.id} lost ${acknowledged.filter((text) => !member.machine.history.includes(text)).join(', ')}`));
    }
    for (let i = 0; i < 10; i++) {
      await proposeOnLeader(cluster, `after${i}=${i}`);
      acknowledged.push(`after${i}=${i}`);
    }

    const restarted = await cluster.restart(first.id);
    const target = second.group.status().appliedIndex;
    await eventually(`${first.id} to catch up`, () => restarted.group.status().appliedIndex >= target);
    assert.deepEqual(restarted.machine.history.slice(0, acknowledged.length), second.machine.history.slice(0, acknowledged.length));
    for (const text of acknowledged) assert.ok(restarted.machine.history.includes(text), `${first.id} is missing ${text}`);
  });

  it('recovers every member from its own data after the whole group restarts', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c'], { snapshotEvery: 15 });
    for (let i = 0; i < 40; i++) await proposeOnLeader(cluster, `k${i}=${i}`);
    const leader = await cluster.leader();
    const before = leader.machine.history.slice();
    await leader.group.snapshotNow();
    const { appliedIndex, snapshotIndex } = leader.group.status();
    assert.equal(snapshotIndex, appliedIndex, 'snapshotNow snapshots everything applied');
    await leader.group.snapshotNow();
    for (const id of ['a', 'b', 'c']) await cluster.stop(id);
    for (const id of ['a', 'b', 'c']) await cluster.restart(id);
    await cluster.leader();
    await proposeOnLeader(cluster, 'after=restart');
    const members = cluster.running();
    await eventually('all to apply the write after the restart', () => members.every((m) => m.machine.history.includes('after=restart')));
    for (const member of members) assert.deepEqual(member.machine.history.slice(0, before.length), before, member.id);
    assert.ok(members.some((m) => m.group.status().snapshotIndex > 0), 'some member should have snapshotted');
  });

  it('spaces automatic snapshots of a large state by the bytes applied since the last one (snapshotLogRatio)', async () => {
    // snapshotEvery 5 on its own would snapshot every 5 entries. With the ratio rule on for any
    // state (minimum 1 byte) and a ratio of 1, a snapshot also waits for a log as large as the last
    // snapshot; the test machine's snapshot holds every command so far, so the gaps keep growing.
    const snapshotsTaken = async (overrides: { snapshotLogRatio: number; snapshotRatioMinBytes: number }): Promise<number[]> => {
      cluster = await TestCluster.start(['a', 'b', 'c'], { snapshotEvery: 5, ...overrides });
      const leader = await cluster.leader();
      const seen = new Set<number>();
      for (let i = 0; i < 120; i++) {
        await proposeOnLeader(cluster, `key-${i}=${'v'.repeat(20)}`);
        seen.add(leader.group.status().snapshotIndex);
      }
      await cluster.close();
      cluster = undefined;
      return [...seen].filter((index) => index > 0).sort((x, y) => x - y);
    };
    const plain = await snapshotsTaken({ snapshotLogRatio: 0, snapshotRatioMinBytes: 0 });
    const spaced = await snapshotsTaken({ snapshotLogRatio: 1, snapshotRatioMinBytes: 1 });
    assert.ok(plain.length >= 15, `without the ratio rule the leader should snapshot about every 5 entries: ${plain.join(', ')}`);
    assert.ok(spaced.length >= 2, `with the ratio rule the leader should still snapshot: ${spaced.join(', ')}`);
    assert.ok(spaced.length * 3 <= plain.length, `the ratio rule should space snapshots out: ${spaced.join(', ')} against ${plain.join(', ')}`);
    const gaps = spaced.slice(1).map((index, i) => index - spaced[i]!);
    assert.ok(gaps.at(-1)! > gaps[0]!, `gaps between snapshots should grow with the state: ${gaps.join(', ')}`);
  });

  it('reaches a member back from a 20 s outage within a few seconds, however long its channel kept failing', async () => {
    // grpc-js backs a failing channel off by 1.6× per attempt (1 s, 1.6 s, 2.6 s, ... up to 120 s,
    // ±20%): with its defaults the leader's next attempt after a 20 s outage came up to 10 s after the
    // member was back (5.1 s in the run that found it), and after a minute's outage tens of seconds
    // later. Peer channels cap it at 1 s, under the stream backoff's 2 s: caught up in about 1.2 s.
    // The bound leaves room for a loaded machine; without the cap most runs fail it, not all.
    cluster = await TestCluster.start(['a', 'b', 'c']);
    const leader = await cluster.leader();
    const away = cluster.running().find((member) => member.id !== leader.id)!;
    await proposeOnLeader(cluster, 'before=1');
    await cluster.stop(away.id);
    const outageEnds = Date.now() + 20_000;
    for (let i = 0; Date.now() < outageEnds; i++) {
      await proposeOnLeader(cluster, `during${i}=${i}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const back = await cluster.restart(away.id);
    const returned = Date.now();
    const target = (await proposeOnLeader(cluster, 'after=1')).index;
    await eventually(`${away.id} to catch up`, () => back.group.status().appliedIndex >= target, 30_000);
    const tookMs = Date.now() - returned;
    assert.ok(tookMs < 5_000, `${away.id} caught up ${tookMs} ms after it came back; the leader's channel to it should retry within a second`);
  });

  it('catches up a replica that was down while the log behind it was compacted, with InstallSnapshot', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c'], { snapshotEvery: 10 });
    const leader = await cluster.leader();
    const lagging = cluster.running().find((member) => member.id !== leader.id)!;
    for (let i = 0; i < 5; i++) await proposeOnLeader(cluster, `early${i}=${i}`);
    await cluster.stop(lagging.id);
    for (let i = 0; i < 60; i++) await proposeOnLeader(cluster, `late${i}=${i}`);
    const current = await cluster.leader();
    await eventually('the leader to compact its log', () => current.group.status().snapshotIndex >= 30);

    const back = await cluster.restart(lagging.id);
    const target = current.group.status().appliedIndex;
    await eventually(`${lagging.id} to catch up`, () => back.group.status().appliedIndex >= target);
    assert.equal(back.machine.restores, 1, 'the replica should have been restored from the leader snapshot');
    assert.ok(back.group.status().snapshotIndex >= 30);
    assert.deepEqual(back.machine.history.slice(0, 65), current.machine.history.slice(0, 65));
    assert.deepEqual([...back.machine.values].sort(), [...current.machine.values].sort());

    // Its snapshot and log are durable: it comes back from them alone.
    await cluster.stop(lagging.id);
    const again = await cluster.restart(lagging.id);
    assert.ok(again.group.status().appliedIndex >= target);
    assert.deepEqual([...again.machine.values].sort(), [...current.machine.values].sort());
  });

  it('hands leadership to a named voter, which then serves writes; refuses non-voters and answers not_leader on a follower', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c']);
    const before = await proposeOnLeader(cluster, 'before=1');
    const leader = await cluster.leader();
    const [target, other] = cluster.running().filter((member) => member.id !== leader.id) as [TestMember, TestMember];
    const termBefore = leader.group.status().term;

    assert.deepEqual(await other.group.transferLeadership(target.id), { kind: 'not_leader', leaderId: leader.id, leaderAddress: leader.address });
    assert.equal((await leader.group.transferLeadership('nobody')).kind, 'rejected');
    assert.deepEqual(await leader.group.transferLeadership(leader.id), { kind: 'transferred', leaderId: leader.id, term: termBefore });

    const outcome = await leader.group.transferLeadership(target.id);
    assert.equal(outcome.kind, 'transferred', JSON.stringify(outcome));
    assert.ok(outcome.kind === 'transferred' && outcome.leaderId === target.id && outcome.term > termBefore, JSON.stringify(outcome));
    assert.equal(target.group.status().role, 'leader');
    assert.equal(leader.group.status().role, 'follower');
    // The new leader has every acknowledged write and takes new ones; the old one points to it.
    const after = await target.group.propose(command('after=2'));
    assert.ok(after.kind === 'applied' && after.index > before.index, JSON.stringify(after));
    assert.equal(target.machine.values.get('before'), '1');
    assert.deepEqual(await leader.group.propose(command('x=3')), { kind: 'not_leader', leaderId: target.id, leaderAddress: target.address });
  });

  it('gives up a transfer to a voter that is down after an election timeout, and keeps leading', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c']);
    await proposeOnLeader(cluster, 'before=1');
    const leader = await cluster.leader();
    const down = cluster.running().find((member) => member.id !== leader.id)!;
    await cluster.stop(down.id);
    await proposeOnLeader(cluster, 'behind=1');
    const outcome = await leader.group.transferLeadership(down.id);
    assert.equal(outcome.kind, 'failed', JSON.stringify(outcome));
    assert.ok(outcome.kind === 'failed' && /did not take over within an election timeout/.test(outcome.reason), outcome.kind === 'failed' ? outcome.reason : '');
    assert.equal(leader.group.status().role, 'leader');
    assert.equal((await leader.group.propose(command('after=1'))).kind, 'applied');
  });

  it('a member about to stop (handOffLeadership called) does not campaign when told timeout_now', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c']);
    await proposeOnLeader(cluster, 'before=1');
    const leader = await cluster.leader();
    const leaving = cluster.running().find((member) => member.id !== leader.id)!;
    assert.equal(await leaving.group.handOffLeadership(), undefined, 'a follower has nothing to hand over');
    const term = leader.group.status().term;
    // Without the flag the target would campaign at once and win (the test above).
    const outcome = await leader.group.transferLeadership(leaving.id);
    assert.equal(outcome.kind, 'failed', JSON.stringify(outcome));
    assert.equal(leaving.group.status().role, 'follower');
    assert.equal(leaving.group.status().term, term, 'it never campaigned');
    assert.equal(leader.group.status().role, 'leader');
    assert.equal((await leader.group.propose(command('after=1'))).kind, 'applied');
  });

  it('a leader stopping with its whole group gives its hand-over up once the target falls silent', async () => {
    // An election timeout of 2 s: the hand-over must end on the target's silence (three heartbeat
    // intervals, 60 ms), long before its bound of two election timeouts.
    cluster = await TestCluster.start(['a', 'b', 'c'], { electionTicks: 100 });
    await proposeOnLeader(cluster, 'before=1');
    const leader = await cluster.leader();
    const followers = cluster.running().filter((member) => member.id !== leader.id);
    // The followers' groups stop first, as in a shutdown of every process at once, while their
    // servers still take (and drop) messages. Had their servers gone too, the leader could learn
    // of it from its transport before handing over, and then find no candidate at all.
    await Promise.all(followers.map((member) => member.group.stop()));
    const outcome = await leader.group.handOffLeadership();
    assert.ok(outcome?.kind === 'failed' && /stopped answering/.test(outcome.reason), JSON.stringify(outcome));
  });

  it('a leader applies entries an acknowledgement commits while it is still writing later ones', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c']);
    await proposeOnLeader(cluster, 'warm=1');
    const leader = await cluster.leader();
    // The leader's write of the batch holding 'slow' takes a second; the acknowledgements of the
    // batch before it ('first') come back meanwhile.
    const storage = (leader.group as unknown as { storage: { persist(update: { entries: { data: Uint8Array }[] }): Promise<void> } }).storage;
    const persist = storage.persist.bind(storage);
    let slowWriteDone = false;
    storage.persist = async (update) => {
      if (update.entries.some((entry) => Buffer.from(entry.data).includes('slow=2'))) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        slowWriteDone = true;
      }
      return persist(update);
    };
    const first = leader.group.propose(command('first=1')).then((outcome) => ({ outcome, beforeSlowWrite: !slowWriteDone }));
    // Queued while 'first' is being written: the next batch.
    await new Promise((resolve) => setImmediate(resolve));
    const slow = leader.group.propose(command('slow=2'));
    const answered = await first;
    assert.equal(answered.outcome.kind, 'applied', JSON.stringify(answered.outcome));
    assert.ok(answered.beforeSlowWrite, "'first' was answered only after the write of the next batch");
    assert.equal(leader.machine.values.get('first'), '1');
    assert.equal((await slow).kind, 'applied');
    assert.equal(leader.machine.values.get('slow'), '2');
    // Every member applies the same entries in the same order.
    const index = leader.group.status().appliedIndex;
    await eventually('all members apply everything', () => appliedEverywhere(cluster!.running(), index));
    for (const member of cluster.running()) assert.deepEqual([...member.machine.values], [...leader.machine.values]);
  });

  it('a leader appends the proposals of one turn of the event loop as one batch', async () => {
    cluster = await TestCluster.start(['a', 'b', 'c']);
    await proposeOnLeader(cluster, 'warm=1');
    const leader = await cluster.leader();
    const storage = (leader.group as unknown as { storage: { persist(update: { entries: unknown[] }): Promise<void> } }).storage;
    const persist = storage.persist.bind(storage);
    const written: number[] = [];
    storage.persist = (update) => {
      if (update.entries.length > 0) written.push(update.entries.length);
      return persist(update);
    };
    // Twenty calls in one turn, as one read of a busy connection delivers them.
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => leader.group.propose(command(`batch${i}=x`))));
    for (const outcome of outcomes) assert.equal(outcome.kind, 'applied', JSON.stringify(outcome));
    // Not a write of the first alone followed by one of the other nineteen.
    assert.deepEqual(written, [20]);
    const indexes = outcomes.map((outcome) => (outcome.kind === 'applied' ? outcome.index : 0));
    assert.deepEqual(indexes, indexes.map((_, i) => indexes[0]! + i), 'in the order they were proposed');
  });

  it('adds a learner, promotes it, and removes a member', async () => {
    // Snapshots every few entries: the new member's first contact is a snapshot, whose membership
    // and addresses are all it knows about the group.
    cluster = await TestCluster.start(['a', 'b', 'c'], { snapshotEvery: 5 });
    await proposeOnLeader(cluster, 'before=1');
    for (let i = 0; i < 12; i++) await proposeOnLeader(cluster, `fill${i}=${i}`);
    await eventually('a compacted log', () => cluster?.running().every((m) => m.group.status().snapshotIndex > 0));
    const joiner = await cluster.addMember('d');
    let leader = await cluster.leader();
    const added = await leader.group.changeMembership({ kind: 'add_learner', memberId: 'd', address: joiner.address });
    assert.equal(added.kind, 'applied');
    await eventually('d to catch up as a learner', () => joiner.machine.values.get('before') === '1');
    assert.equal(joiner.group.status().role, 'learner');

    let promoted;
    for (let attempt = 0; attempt < 50; attempt++) {
      leader = await cluster.leader();
      promoted = await leader.group.changeMembership({ kind: 'promote', memberId: 'd' });
      if (promoted.kind === 'applied') break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(promoted?.kind, 'applied');
    const voters = leader.group.status().members.filter((m) => m.voter).map((m) => m.memberId).sort();
    assert.deepEqual(voters, ['a', 'b', 'c', 'd']);

    // Adding an id that is already a member is refused, and its address stays what it was (the
    // driver writes a new member's address to the log only for a change the core accepts).
    const memberId = ['a', 'b', 'c'].find((id) => id !== leader.id)!;
    const addressBefore = leader.group.status().members.find((m) => m.memberId === memberId)?.address;
    const readded = await leader.group.changeMembership({ kind: 'add_learner', memberId, address: '127.0.0.1:9' });
    assert.equal(readded.kind, 'rejected');
    await proposeOnLeader(cluster, 'still=1');
    for (const member of cluster.running()) {
      assert.equal(member.group.status().members.find((m) => m.memberId === memberId)?.address, addressBefore);
    }

    const removedId = ['a', 'b', 'c'].find((id) => id !== leader.id)!;
    const removed = await leader.group.changeMembership({ kind: 'remove', memberId: removedId });
    assert.equal(removed.kind, 'applied');
    await cluster.stop(removedId);
    await proposeOnLeader(cluster, 'after=2');
    await eventually('d to apply writes as a voter', () => joiner.machine.values.get('after') === '2');
    assert.deepEqual(
      joiner.group.status().members.map((m) => m.memberId).sort(),
      ['a', 'b', 'c', 'd'].filter((id) => id !== removedId),
    );
  });
});
