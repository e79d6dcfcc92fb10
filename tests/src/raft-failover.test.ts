// Raft failover with real processes: a shard group of three replicas and a coordinator, a steady
// write load through the coordinator, and SIGKILL of the group's leader mid-load. Defends: no
// acknowledged write is lost while a majority survives (DESIGN.md); a new leader is elected and
// takes the writes; the killed replica rejoins and catches up — by snapshot, since the survivors
// compacted their logs past it while it was down.
//
// Timings are reported (t.diagnostic), never asserted; the bounds below only keep a broken build
// from hanging.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import type { Client } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import { describeExit, startLocalCluster, type MemberStatus, type ProcessExit } from './harness/cluster.js';
import { describeError, forEachConcurrently, kvClient, shardClient, unary, withRetry } from './harness/grpc.js';
import { readBack, summarize } from './harness/verify.js';
import { writeKeys } from './harness/writer.js';

const GROUP = 'g1';
const KEY_COUNT = 5_000;
const CONCURRENCY = 16;
/** The leader is killed once this many writes were acknowledged. */
const KILL_AFTER_ACKS = 1_500;
/** Small, so the survivors snapshot and compact their logs many times while the killed replica is down. */
const SNAPSHOT_EVERY = 200;
/** Writes that must land while the killed replica is down, so it cannot catch up from the leader's log. */
const MIN_WRITES_WHILE_DOWN = 1_000;
/** Liveness bounds: failure guards, not expected durations. */
const ELECTION_BOUND_MS = 15_000;
const CATCH_UP_BOUND_MS = 15_000;
const SNAPSHOT_INSTALLED = 'installed a snapshot from the leader';

interface LogRecord {
  msg?: string;
  index?: number;
  commit?: number;
}

function parseLog(line: string): LogRecord | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as LogRecord;
  } catch {
    return undefined;
  }
}

test('SIGKILL of the leader under load: every acknowledged write survives, a new leader takes over, the killed replica catches up by snapshot', { timeout: 170_000 }, async (t) => {
  // One coordinator with the config engine: this test is about a shard group, and it keeps that
  // engine covered with real processes (coordinator-failover.test.ts covers the meta group).
  const cluster = await startLocalCluster({ groups: [GROUP], coordinators: 1, shardArgs: ['--snapshot-every', String(SNAPSHOT_EVERY)] });
  const clients: Client[] = [];
  try {
    const kv = kvClient(cluster.coordinatorAddress);
    clients.push(kv);
    const oldLeader = await cluster.leaderOf(GROUP);
    const victim = oldLeader.name;
    const run = randomBytes(4).toString('hex');

    // 1. Load through the coordinator; the leader dies mid-load and stays down until it ends.
    const chaos: { run?: Promise<{ exit: ProcessExit; killedAt: number; newLeader: MemberStatus; electedAt: number }> } = {};
    const loadStart = performance.now();
    const report = await writeKeys({
      kv,
      count: KEY_COUNT,
      keyOf: (index) => `failover-${String(index).padStart(5, '0')}`,
      valueOf: (index) => Buffer.from(`value-${index}-${run}`),
      concurrency: CONCURRENCY,
      deadlineMs: 3_000,
      retryBackoffMs: [100, 200, 400, 800, 1_600, 3_200],
      timeBoundMs: 60_000,
      onAck: (acked) => {
        if (acked !== KILL_AFTER_ACKS) return;
        chaos.run = (async () => {
          const exit = await cluster.kill(victim, 'SIGKILL');
          const killedAt = performance.now();
          const newLeader = await cluster.leaderOf(GROUP, { timeoutMs: ELECTION_BOUND_MS });
          return { exit, killedAt, newLeader, electedAt: performance.now() };
        })();
        // Awaited after the load; until then a failure must not count as an unhandled rejection.
        chaos.run.catch(() => undefined);
      },
    });
    const loadEnd = performance.now();
    assert.ok(chaos.run !== undefined, `the leader was never killed: only ${report.ackedCount} writes were acknowledged`);
    const fault = await chaos.run;
    assert.deepEqual(fault.exit, { code: null, signal: 'SIGKILL' }, `${victim} should have died from SIGKILL, ended with ${describeExit(fault.exit)}`);
    assert.equal(cluster.running(victim), false, `${victim} stays down until the load is over`);

    const acked = report.outcomes.filter((outcome) => outcome.acked);
    const notAcked = report.outcomes.filter((outcome) => !outcome.acked);
    // Only the new leader can have acknowledged a write sent after the old one died.
    const afterKill = acked.filter((outcome) => outcome.ackedAttemptStartedAt! > fault.killedAt);
    t.diagnostic(
      `load: ${report.ackedCount}/${KEY_COUNT} acknowledged in ${Math.round(loadEnd - loadStart)} ms, ${report.failedAttempts} failed attempts, ` +
        `${notAcked.length} never acknowledged${notAcked[0] === undefined ? '' : ` (e.g. ${notAcked[0].key}: ${notAcked[0].lastError})`}; ` +
        `by status: ${[...report.errors].map(([error, n]) => `${n}× ${error}`).join('; ') || 'none'}`,
    );

    // 2. A surviving member leads a later term and took the writes.
    assert.notEqual(fault.newLeader.name, victim, 'a surviving member leads the group');
    assert.ok(fault.newLeader.status.term > oldLeader.status.term, `the new leader's term ${fault.newLeader.status.term} is above ${oldLeader.status.term}`);
    assert.equal(report.timedOut, false, 'the write load hit its time bound');
    assert.ok(afterKill.length >= MIN_WRITES_WHILE_DOWN, `only ${afterKill.length} writes were acknowledged after the kill (expected at least ${MIN_WRITES_WHILE_DOWN})`);
    const firstAckAfterKill = Math.min(...afterKill.map((outcome) => outcome.ackedAt!));
    t.diagnostic(
      `failover: killed leader ${victim} (term ${oldLeader.status.term}); ${fault.newLeader.name} seen leading term ${fault.newLeader.status.term} ` +
        `${Math.round(fault.electedAt - fault.killedAt)} ms after the kill; first write acknowledged by it ${Math.round(firstAckAfterKill - fault.killedAt)} ms after the kill; ` +
        `${afterKill.length} writes acknowledged while ${victim} was down`,
    );

    // 3. Every acknowledged write reads back, linearizably, through the coordinator.
    const problems = await readBack(kv, report.outcomes, { concurrency: CONCURRENCY, checkVersions: true });
    assert.equal(problems.length, 0, `after the failover: ${summarize(problems)}`);

    // 4. The killed replica rejoins. The leader's log now starts past everything it has, so it
    // catches up from a snapshot, then from the log.
    const leaderBefore = await cluster.leaderOf(GROUP);
    const restartAt = performance.now();
    await cluster.restart(victim);
    const rejoined = await cluster.caughtUp(victim, { index: leaderBefore.status.commitIndex, timeoutMs: CATCH_UP_BOUND_MS });
    const caughtUpAt = performance.now();
    const records = cluster.outputOf(victim).map(parseLog).filter((record): record is LogRecord => record !== undefined);
    const recovered = records.find((record) => record.msg === 'raft member recovered');
    const installed = records.filter((record) => record.msg === SNAPSHOT_INSTALLED);
    assert.ok(installed.length > 0, `${victim} should have installed a snapshot from the leader; its log:\n${cluster.logs(victim)}`);
    const recoveredCommit = recovered?.commit ?? 0;
    assert.ok(installed[0]!.index! > recoveredCommit, `the snapshot (index ${installed[0]!.index}) is ahead of what ${victim} recovered (commit ${recoveredCommit})`);
    assert.equal(rejoined.role, 'FOLLOWER');
    assert.equal(rejoined.leaderAddress, leaderBefore.address);
    t.diagnostic(
      `catch-up: ${victim} recovered its own log up to commit ${recoveredCommit}, installed a snapshot at index ${installed[0]!.index}, ` +
        `applied ${rejoined.appliedIndex} ≥ the leader's commit ${leaderBefore.status.commitIndex} ${Math.round(caughtUpAt - restartAt)} ms after its restart`,
    );

    // 5. The rejoined replica holds every acknowledged write in its own state, and answers
    // linearizable reads too (a follower's read barrier asks the leader for its commit index).
    const local = shardClient(cluster.address(victim));
    clients.push(local);
    const missing: string[] = [];
    await forEachConcurrently(acked, CONCURRENCY, async (outcome, index) => {
      const consistency = index % 10 === 0 ? ReadConsistency.READ_CONSISTENCY_LINEARIZABLE : ReadConsistency.READ_CONSISTENCY_SERIALIZABLE;
      try {
        const got = await withRetry(() => unary(local.get.bind(local), { ringEpoch: 0, key: outcome.key, consistency }, 5_000), 8, 250);
        if (!got.found || !got.value.equals(outcome.value)) missing.push(`${outcome.key}: found=${got.found} value=${JSON.stringify(got.value.toString())}`);
      } catch (error) {
        missing.push(`${outcome.key}: ${describeError(error)}`);
      }
    });
    assert.equal(missing.length, 0, `reading the rejoined ${victim} directly: ${summarize(missing)}`);

    // 6. The whole group still serves: a write through the coordinator, read back from every replica.
    const probe = await unary(kv.put.bind(kv), { key: `failover-probe-${run}`, value: Buffer.from('after rejoin') }, 5_000);
    for (const name of cluster.shardNames(GROUP)) {
      const replica = shardClient(cluster.address(name));
      clients.push(replica);
      const got = await unary(replica.get.bind(replica), { ringEpoch: 0, key: `failover-probe-${run}`, consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE }, 5_000);
      assert.deepEqual({ found: got.found, version: got.version }, { found: true, version: probe.version }, `${name} reads the probe write`);
    }
  } catch (error) {
    t.diagnostic(`cluster output:\n${cluster.logs()}`);
    throw error;
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
});
