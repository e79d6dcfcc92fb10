// Coordinator failover with real processes: the meta group of three coordinators (Raft) in front of
// two shard groups, a write load through coordinator-0, and SIGKILL of the meta leader mid-load.
// Defends: a coordinator holds no data, so every acknowledged write stays readable through the
// survivors; the survivors elect a new meta leader and keep serving the ring (GetRing), Status and
// writes; the killed coordinator rejoins from its data dir as a follower and catches up.
//
// The leader may be coordinator-0 itself (then the writes through it stop with it) or another
// (then coordinator-0 forwards to the new leader once elected); both are checked as they come.
// Timings are reported (t.diagnostic), never asserted; the bounds only keep a broken build from hanging.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import type { Client } from '@grpc/grpc-js';
import { MemberRole } from '@concord/proto/cluster';
import { ReadConsistency } from '@concord/proto/common';
import { describeExit, startLocalCluster, type CoordinatorStatus, type ProcessExit } from './harness/cluster.js';
import { clusterClient, describeError, kvClient, sleep, unary, withRetry } from './harness/grpc.js';
import { fetchRing, fetchStatus, readBack, summarize } from './harness/verify.js';
import { writeKeys } from './harness/writer.js';

const GROUPS = ['g1', 'g2'];
const KEY_COUNT = 1_500;
const CONCURRENCY = 16;
/** The meta leader is killed once this many writes were acknowledged. */
const KILL_AFTER_ACKS = 500;
/** Liveness bounds: failure guards, not expected durations. */
const ELECTION_BOUND_MS = 15_000;
const CATCH_UP_BOUND_MS = 15_000;

test('SIGKILL of the meta leader: acknowledged writes stay readable, the survivors elect a leader and serve, the killed coordinator rejoins', { timeout: 120_000 }, async (t) => {
  const cluster = await startLocalCluster({ groups: GROUPS });
  const clients: Client[] = [];
  const kvOf = (name: string) => {
    const client = kvClient(cluster.address(name));
    clients.push(client);
    return client;
  };
  const clusterApiOf = (name: string) => {
    const client = clusterClient(cluster.address(name));
    clients.push(client);
    return client;
  };
  try {
    const [entry] = cluster.coordinatorNames;
    assert.equal(entry, 'coordinator-0');
    const oldLeader = await cluster.metaLeader();
    const victim = oldLeader.name;
    const run = randomBytes(4).toString('hex');

    // 1. Writes through coordinator-0; the meta leader dies mid-load and stays down until it ends.
    const chaos: { run?: Promise<{ exit: ProcessExit; killedAt: number; newLeader: CoordinatorStatus; electedAt: number }> } = {};
    const report = await writeKeys({
      kv: kvOf(entry),
      count: KEY_COUNT,
      keyOf: (index) => `meta-failover-${String(index).padStart(5, '0')}`,
      valueOf: (index) => Buffer.from(`value-${index}-${run}`),
      concurrency: CONCURRENCY,
      deadlineMs: 3_000,
      retryBackoffMs: [100, 200, 400, 800, 1_600],
      timeBoundMs: 60_000,
      onAck: (acked) => {
        if (acked !== KILL_AFTER_ACKS) return;
        chaos.run = (async () => {
          const exit = await cluster.kill(victim, 'SIGKILL');
          const killedAt = performance.now();
          const newLeader = await cluster.metaLeader({ timeoutMs: ELECTION_BOUND_MS });
          return { exit, killedAt, newLeader, electedAt: performance.now() };
        })();
        // Awaited after the load; until then a failure must not count as an unhandled rejection.
        chaos.run.catch(() => undefined);
      },
    });
    assert.ok(chaos.run !== undefined, `the meta leader was never killed: only ${report.ackedCount} writes were acknowledged`);
    const fault = await chaos.run;
    assert.deepEqual(fault.exit, { code: null, signal: 'SIGKILL' }, `${victim} should have died from SIGKILL, ended with ${describeExit(fault.exit)}`);
    assert.equal(report.timedOut, false, 'the write load hit its time bound');
    const acked = report.outcomes.filter((outcome) => outcome.acked);
    const afterKill = acked.filter((outcome) => outcome.ackedAttemptStartedAt! > fault.killedAt);
    t.diagnostic(
      `load through ${entry}: ${report.ackedCount}/${KEY_COUNT} acknowledged, ${report.failedAttempts} failed attempts, ${afterKill.length} acknowledged after the kill; ` +
        `by status: ${[...report.errors].map(([error, n]) => `${n}× ${error}`).join('; ') || 'none'}`,
    );
    t.diagnostic(
      `killed meta leader ${victim} (term ${oldLeader.member.term}); ${fault.newLeader.name} seen leading term ${fault.newLeader.member.term} ` +
        `${Math.round(fault.electedAt - fault.killedAt)} ms after the kill`,
    );

    // 2. A survivor leads a later term.
    const newLeader = fault.newLeader;
    assert.notEqual(newLeader.name, victim, 'a surviving coordinator leads the meta group');
    assert.ok(newLeader.member.term > oldLeader.member.term, `the new leader's term ${newLeader.member.term} is above ${oldLeader.member.term}`);
    if (victim !== entry) {
      // coordinator-0 survived as a follower: once a new leader was elected it forwarded to it.
      assert.ok(afterKill.length > 0, `${entry} survived, yet no write through it was acknowledged after the kill`);
    }
    const survivors = cluster.coordinatorNames.filter((name) => name !== victim);

    // 3. Every acknowledged write reads back through a surviving coordinator (one that did not
    // take the writes, when coordinator-0 survived).
    const reader = survivors.find((name) => name !== entry) ?? survivors[0]!;
    const problems = await readBack(kvOf(reader), report.outcomes, { concurrency: CONCURRENCY, checkVersions: true });
    assert.equal(problems.length, 0, `reading back through ${reader}: ${summarize(problems)}`);

    // 4. GetRing and Status still answer through every survivor.
    for (const name of survivors) {
      const api = clusterApiOf(name);
      const { response: ring } = await fetchRing(api);
      assert.equal(ring.epoch, cluster.ringEpoch, `GetRing through ${name}`);
      assert.deepEqual(ring.groups.map((group) => group.groupId), GROUPS);
      const status = await fetchStatus(api);
      assert.equal(status.ringEpoch, cluster.ringEpoch);
      assert.deepEqual(status.groups.map((group) => group.groupId), GROUPS, `Status through ${name} lists every shard group`);
      assert.equal(status.meta?.leaderId, newLeader.member.memberId, `Status through ${name} names the new meta leader`);
      assert.deepEqual(
        status.meta?.members.map((member) => [member.memberId, member.role === MemberRole.MEMBER_ROLE_UNREACHABLE]),
        cluster.coordinatorNames.map((name) => [name, name === victim]),
        `Status through ${name}: the killed coordinator is UNREACHABLE, the others answer`,
      );
    }

    // 5. Writes keep working through every survivor, and read back through the other.
    for (const name of survivors) {
      const kv = kvOf(name);
      const key = `meta-failover-through-${name}-${run}`;
      const put = await withRetry(() => unary(kv.put.bind(kv), { key, value: Buffer.from(name) }, 5_000), 8, 250);
      const other = kvOf(survivors.find((each) => each !== name)!);
      const got = await unary(other.get.bind(other), { key, consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE }, 5_000);
      assert.deepEqual({ found: got.found, version: got.version, value: got.value.toString() }, { found: true, version: put.version, value: name });
    }

    // 6. The killed coordinator rejoins from its data dir, follows the new leader and catches up.
    const leaderBefore = await cluster.metaLeader();
    const restartAt = performance.now();
    await cluster.restart(victim);
    const deadline = Date.now() + CATCH_UP_BOUND_MS;
    let rejoined: CoordinatorStatus | undefined;
    let last = '';
    for (;;) {
      try {
        const status = await cluster.coordinatorStatus(victim);
        last = `${MemberRole[status.member.role]} term ${status.member.term} applied ${status.member.appliedIndex} leader ${status.leaderId || '(none)'}`;
        const following = status.member.role === MemberRole.MEMBER_ROLE_FOLLOWER && status.leaderId === leaderBefore.member.memberId;
        if (following && status.member.appliedIndex >= leaderBefore.member.commitIndex) {
          rejoined = status;
          break;
        }
      } catch (error) {
        last = describeError(error);
      }
      assert.ok(Date.now() < deadline, `${victim} did not rejoin as a follower of ${leaderBefore.name} within ${CATCH_UP_BOUND_MS} ms (last: ${last})`);
      await sleep(50);
    }
    t.diagnostic(
      `${victim} rejoined as a follower of ${leaderBefore.name} in term ${rejoined.member.term}, applied ${rejoined.member.appliedIndex} ≥ the leader's commit ` +
        `${leaderBefore.member.commitIndex}, ${Math.round(performance.now() - restartAt)} ms after its restart`,
    );
    const { response: ring } = await fetchRing(clusterApiOf(victim));
    assert.equal(ring.epoch, cluster.ringEpoch, 'the rejoined coordinator serves the ring');
    const viaRejoined = kvOf(victim);
    const probe = await withRetry(() => unary(viaRejoined.put.bind(viaRejoined), { key: `meta-failover-rejoined-${run}`, value: Buffer.from('back') }, 5_000), 8, 250);
    assert.ok(probe.version > 0);
  } catch (error) {
    t.diagnostic(`cluster output:\n${cluster.logs()}`);
    throw error;
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
});
