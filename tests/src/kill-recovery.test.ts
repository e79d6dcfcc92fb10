// No acknowledged write is lost when shard processes die by SIGKILL mid-write and come back
// (DESIGN.md, "Guarantees that tests must defend"), and every key lives on the group the ring
// names. Real processes (three Raft replicas per group), real SIGKILL, writes through the
// coordinator's public KV service.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { status as grpcStatus, type Client } from '@grpc/grpc-js';
import type { ShardClient } from '@concord/proto/shard';
import { ReadConsistency } from '@concord/proto/common';
import { describeExit, startLocalCluster, type LocalCluster, type MemberStatus, type ProcessExit } from './harness/cluster.js';
import { clusterClient, describeError, failure, forEachConcurrently, kvClient, shardClient, sleep, trailer, unary, withRetry } from './harness/grpc.js';
import { countByOwner, fetchRing, fetchStatus, readBack, summarize } from './harness/verify.js';
import { writeKeys, type WriteLoad } from './harness/writer.js';

const GROUPS = ['g1', 'g2', 'g3'];
const KEY_COUNT = 10_000;
const CONCURRENCY = 32;
/** The leader is killed once this many writes were acknowledged, while the others are in flight. */
const KILL_AFTER_ACKS = 3_000;
/** How long the killed replica stays down. */
const DOWNTIME_MS = 1_500;
/** Liveness bound on electing a new leader: a failure guard, not an expected duration. */
const ELECTION_BOUND_MS = 15_000;
const VICTIM = 'g2';
/** Sanity floor: the outage may cost some writes their retries, not a tenth of the load. */
const MIN_ACKED = 9_000;

/** Retries span ~8 s, much longer than an election, so the keys whose writes failed over land on the new leader. */
const LOAD_SETTINGS: Pick<WriteLoad, 'concurrency' | 'deadlineMs' | 'retryBackoffMs' | 'timeBoundMs'> = {
  concurrency: CONCURRENCY,
  deadlineMs: 3_000,
  retryBackoffMs: [250, 500, 1_000, 2_000, 4_000],
  timeBoundMs: 90_000,
};

/** Distinct per run, so a value can only have come from this run's writers. */
function valueFactory(): (index: number) => Buffer {
  const run = randomBytes(4).toString('hex');
  return (index) => Buffer.from(`value-${index}-${run}`);
}

function keyName(prefix: string, index: number): string {
  return `${prefix}-${String(index).padStart(5, '0')}`;
}

async function killAll(cluster: LocalCluster): Promise<Map<string, ProcessExit>> {
  const exits = await Promise.all(cluster.processNames.map(async (name) => [name, await cluster.kill(name, 'SIGKILL')] as const));
  return new Map(exits);
}

function assertKilledBySigkill(name: string, exit: ProcessExit | undefined, cluster: LocalCluster): void {
  assert.deepEqual(exit, { code: null, signal: 'SIGKILL' }, `${name} should have died from SIGKILL, but ended with ${describeExit(exit)}\n${cluster.logs(name)}`);
}

test("SIGKILL of a group's leader mid-write loses no acknowledged write; a new leader takes the writes; keys stay on their ring owner", { timeout: 170_000 }, async (t) => {
  const cluster = await startLocalCluster({ groups: GROUPS });
  const clients: Client[] = [];
  try {
    const kv = kvClient(cluster.coordinatorAddress);
    const clusterApi = clusterClient(cluster.coordinatorAddress);
    clients.push(kv, clusterApi);
    const oldLeader = await cluster.leaderOf(VICTIM);
    const victim = oldLeader.name;
    const victimPid = cluster.pid(victim);
    const writeStart = performance.now();

    // The fault runs beside the load: writers never wait for it.
    const chaos: { run?: Promise<{ exit: ProcessExit; killedAt: number; newLeader: MemberStatus; electedAt: number; restartedAt: number }> } = {};
    const valueOf = valueFactory();
    const report = await writeKeys({
      ...LOAD_SETTINGS,
      kv,
      count: KEY_COUNT,
      keyOf: (index) => keyName('key', index),
      valueOf,
      onAck: (acked) => {
        if (acked !== KILL_AFTER_ACKS) return;
        chaos.run = (async () => {
          const exit = await cluster.kill(victim, 'SIGKILL');
          const killedAt = performance.now();
          const newLeader = await cluster.leaderOf(VICTIM, { timeoutMs: ELECTION_BOUND_MS });
          const electedAt = performance.now();
          await sleep(Math.max(0, killedAt + DOWNTIME_MS - performance.now()));
          await cluster.restart(victim);
          return { exit, killedAt, newLeader, electedAt, restartedAt: performance.now() };
        })();
        // Awaited after the load; until then a failure must not count as an unhandled rejection.
        chaos.run.catch(() => undefined);
      },
    });
    assert.ok(chaos.run !== undefined, `the leader was never killed: only ${report.ackedCount} writes were acknowledged`);
    const fault = await chaos.run;
    const notAcked = report.outcomes.filter((outcome) => !outcome.acked);
    const verifyStart = performance.now();
    t.diagnostic(
      `write phase ${Math.round(verifyStart - writeStart)} ms; acknowledged ${report.ackedCount}/${KEY_COUNT}; ${report.failedAttempts} failed attempts; ` +
        `${notAcked.length} keys never acknowledged` +
        (notAcked[0] === undefined ? '' : ` (e.g. ${notAcked[0].key}: ${notAcked[0].lastError})`),
    );
    t.diagnostic(
      `killed leader ${victim} (term ${oldLeader.status.term}); ${fault.newLeader.name} leads term ${fault.newLeader.status.term}, ` +
        `seen ${Math.round(fault.electedAt - fault.killedAt)} ms after the kill; ${victim} restarted after ${Math.round(fault.restartedAt - fault.killedAt)} ms`,
    );

    // The fault really happened, mid-write, to the leader; another member took over; the killed
    // process came back as the same member.
    assertKilledBySigkill(victim, fault.exit, cluster);
    assert.deepEqual(cluster.exits(victim), [{ code: null, signal: 'SIGKILL' }], 'exactly one death of the victim');
    assert.notEqual(fault.newLeader.name, victim, 'a surviving member leads the group');
    assert.ok(fault.newLeader.status.term > oldLeader.status.term, `the new leader's term ${fault.newLeader.status.term} is above ${oldLeader.status.term}`);
    assert.ok(cluster.running(victim), `${victim} is running again`);
    assert.notEqual(cluster.pid(victim), victimPid, 'the restarted replica is a new process');
    const victimStatus = await cluster.caughtUp(victim);
    assert.equal(victimStatus.groupId, VICTIM);
    assert.equal(victimStatus.memberId, oldLeader.status.memberId);

    // Every key was attempted; most were acknowledged, and the group took writes while the old
    // leader was down: acknowledged by the new leader (the old one was dead).
    assert.equal(report.timedOut, false, 'the write load hit its time bound');
    assert.equal(report.outcomes.filter((outcome) => outcome.attempts === 0).length, 0, 'every key was attempted');
    assert.ok(report.ackedCount >= MIN_ACKED, `only ${report.ackedCount} of ${KEY_COUNT} writes were acknowledged (expected at least ${MIN_ACKED}); e.g. ${notAcked[0]?.key}: ${notAcked[0]?.lastError}`);

    // The ring as served, and as computed here from the published hash contract.
    const { response: ringResponse, ring } = await fetchRing(clusterApi);
    assert.equal(ringResponse.epoch, cluster.ringEpoch);
    assert.equal(ringResponse.vnodesPerGroup, cluster.ringVnodes);
    assert.equal(ringResponse.hash, 'sha256-be64');
    assert.deepEqual(
      Object.fromEntries(ringResponse.groups.map((group) => [group.groupId, [...group.addresses]])),
      Object.fromEntries(GROUPS.map((group) => [group, cluster.shardAddresses(group)])),
      'GetRing names every group with the address of each of its replicas',
    );

    const failuresPerGroup = new Map(GROUPS.map((group) => [group, 0]));
    for (const outcome of report.outcomes) {
      const owner = ring.ownerOf(outcome.key);
      failuresPerGroup.set(owner, failuresPerGroup.get(owner)! + outcome.failures);
    }
    t.diagnostic(`failed attempts per group: ${[...failuresPerGroup].map(([group, n]) => `${group} ${n}`).join(', ')}; by status: ${[...report.errors].map(([error, n]) => `${n}× ${error}`).join('; ')}`);

    // A failover costs only the group's own keys: every key of the other groups was acknowledged.
    const healthyUnacked = notAcked.filter((outcome) => ring.ownerOf(outcome.key) !== VICTIM);
    assert.equal(healthyUnacked.length, 0, `keys of the groups that stayed up were not acknowledged, e.g. ${healthyUnacked[0]?.key}: ${healthyUnacked[0]?.lastError}`);

    const acked = report.outcomes.filter((outcome) => outcome.acked);
    const victimAckedWhileDown = acked.filter(
      (outcome) => ring.ownerOf(outcome.key) === VICTIM && outcome.ackedAttemptStartedAt! > fault.killedAt && outcome.ackedAt! < fault.restartedAt,
    );
    assert.ok(victimAckedWhileDown.length > 0, `no write to ${VICTIM} was acknowledged while its old leader ${victim} was down`);
    const firstOnNewLeader = Math.min(...victimAckedWhileDown.map((outcome) => outcome.ackedAt!));
    t.diagnostic(
      `${victimAckedWhileDown.length} writes to ${VICTIM} acknowledged by ${fault.newLeader.name} while ${victim} was down; ` +
        `the first ${Math.round(firstOnNewLeader - fault.killedAt)} ms after the kill`,
    );

    // 1. Every acknowledged key reads back, linearizably, with its exact value.
    const problems = await readBack(kv, report.outcomes, { concurrency: CONCURRENCY, checkVersions: true });
    assert.equal(problems.length, 0, `reading back through the coordinator: ${summarize(problems)}`);

    // 2. Each acknowledged key is stored by the group the ring names, and only there: its leader
    // has it, the replica that was killed has it too (read locally, it has caught up), and a
    // replica of another group refuses the key as WRONG_SHARD.
    const leaders = new Map(await Promise.all(GROUPS.map(async (group) => [group, await cluster.leaderOf(group)] as const)));
    const clientOf = (address: string): ShardClient => {
      const client = shardClient(address);
      clients.push(client);
      return client;
    };
    const leaderShards = new Map(GROUPS.map((group) => [group, clientOf(leaders.get(group)!.address)] as const));
    const otherShards = new Map(GROUPS.map((group) => [group, clientOf(cluster.shardAddress(group, 0))] as const));
    const rejoined = clientOf(cluster.address(victim));
    const placement: string[] = [];
    await forEachConcurrently(acked, CONCURRENCY, async (outcome) => {
      const owner = ring.ownerOf(outcome.key);
      const other = GROUPS[(GROUPS.indexOf(owner) + 1) % GROUPS.length]!;
      const ownerShard = leaderShards.get(owner)!;
      const otherShard = otherShards.get(other)!;
      const request = { ringEpoch: ringResponse.epoch, key: outcome.key, consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE };
      try {
        const direct = await withRetry(() => unary(ownerShard.get.bind(ownerShard), request, 5_000), 8, 250);
        if (!direct.found || !direct.value.equals(outcome.value)) {
          placement.push(`${outcome.key}: the leader of its owner ${owner} answers found=${direct.found} value=${JSON.stringify(direct.value.toString())}`);
        }
        if (owner === VICTIM) {
          const local = await withRetry(() => unary(rejoined.get.bind(rejoined), { ...request, consistency: ReadConsistency.READ_CONSISTENCY_SERIALIZABLE }, 5_000), 8, 250);
          if (!local.found || !local.value.equals(outcome.value)) {
            placement.push(`${outcome.key}: the rejoined ${victim} answers found=${local.found} value=${JSON.stringify(local.value.toString())}`);
          }
        }
      } catch (error) {
        placement.push(`${outcome.key}: Shard.Get on its owner ${owner} failed: ${describeError(error)}`);
      }
      let refusal: string | undefined;
      try {
        const refused = await failure(unary(otherShard.get.bind(otherShard), request, 5_000), `Shard.Get of ${outcome.key} on ${other}`);
        const reason = trailer(refused, 'concord-reason');
        if (refused.code !== grpcStatus.FAILED_PRECONDITION || reason !== 'WRONG_SHARD') refusal = `${describeError(refused)} (concord-reason ${reason})`;
      } catch (error) {
        refusal = describeError(error);
      }
      if (refusal !== undefined) {
        placement.push(`${outcome.key}: ${other} (not its owner ${owner}) should refuse it with FAILED_PRECONDITION WRONG_SHARD, got ${refusal}`);
      }
    });
    assert.equal(placement.length, 0, `placement on the ring: ${summarize(placement)}`);
    t.diagnostic(`read-back and placement checks ${Math.round(performance.now() - verifyStart)} ms`);

    // 3. Keys are spread over every group, and each group's key count covers its acknowledged keys
    // (">=": a write can be applied and its acknowledgement lost in the kill) and no more than
    // were ever attempted on it (nothing invented).
    const ackedPerGroup = countByOwner(ring, acked);
    const attemptedPerGroup = countByOwner(ring, report.outcomes);
    for (const group of GROUPS) assert.ok(ackedPerGroup.get(group)! > 0, `group ${group} holds none of the acknowledged keys`);
    const clusterStatus = await fetchStatus(clusterApi);
    assert.deepEqual(clusterStatus.groups.map((group) => group.groupId), GROUPS, 'Cluster.Status lists every group');
    for (const group of clusterStatus.groups) {
      const ackedHere = ackedPerGroup.get(group.groupId)!;
      const attemptedHere = attemptedPerGroup.get(group.groupId)!;
      assert.ok(
        group.keyCount >= ackedHere && group.keyCount <= attemptedHere,
        `group ${group.groupId} reports ${group.keyCount} keys; ${ackedHere} were acknowledged and ${attemptedHere} attempted on it`,
      );
    }
  } catch (error) {
    t.diagnostic(`cluster output:\n${cluster.logs()}`);
    throw error;
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
});

test('SIGKILL of every process, mid-write and again at rest, keeps every acknowledged key', { timeout: 120_000 }, async (t) => {
  const cluster = await startLocalCluster({ groups: GROUPS });
  const clients: Client[] = [];
  try {
    const kv = kvClient(cluster.coordinatorAddress);
    const clusterApi = clusterClient(cluster.coordinatorAddress);
    clients.push(kv, clusterApi);
    const count = 3_000;
    const killAfter = 1_500;

    // Round 1: everything dies mid-write and restarts at once; the writers carry on. The writes
    // acknowledged after the restart are appended to logs that were just recovered.
    const chaos: { run?: Promise<{ exits: Map<string, ProcessExit>; acksAtKill: number }> } = {};
    const report = await writeKeys({
      ...LOAD_SETTINGS,
      kv,
      count,
      keyOf: (index) => keyName('all', index),
      valueOf: valueFactory(),
      onAck: (acked) => {
        if (acked !== killAfter) return;
        chaos.run = (async () => {
          const exits = await killAll(cluster);
          await cluster.startAll();
          return { exits, acksAtKill: acked };
        })();
        chaos.run.catch(() => undefined);
      },
    });
    assert.ok(chaos.run !== undefined, `the cluster was never killed: only ${report.ackedCount} writes were acknowledged`);
    const fault = await chaos.run;
    for (const [name, exit] of fault.exits) assertKilledBySigkill(name, exit, cluster);
    assert.equal(report.timedOut, false, 'the write load hit its time bound');
    assert.ok(report.ackedCount > fault.acksAtKill, `no write was acknowledged after the restart`);
    t.diagnostic(`round 1: acknowledged ${report.ackedCount}/${count}, ${report.failedAttempts} failed attempts`);

    // Round 2: everything dies again, at rest, and restarts.
    for (const [name, exit] of await killAll(cluster)) assertKilledBySigkill(name, exit, cluster);
    await cluster.startAll();

    const problems = await readBack(kv, report.outcomes, { concurrency: CONCURRENCY, checkVersions: true });
    assert.equal(problems.length, 0, `after two restarts of everything: ${summarize(problems)}`);

    const { ring } = await fetchRing(clusterApi);
    const ackedPerGroup = countByOwner(ring, report.outcomes.filter((outcome) => outcome.acked));
    const clusterStatus = await fetchStatus(clusterApi);
    for (const group of clusterStatus.groups) {
      assert.ok(group.keyCount >= ackedPerGroup.get(group.groupId)!, `group ${group.groupId} reports ${group.keyCount} keys, fewer than the ${ackedPerGroup.get(group.groupId)} acknowledged on it`);
    }

    // Graceful shutdown: SIGTERM ends every process with exit code 0.
    for (const client of clients.splice(0)) client.close();
    const exits = await cluster.stop();
    for (const name of cluster.processNames) {
      assert.deepEqual(exits.get(name), { code: 0, signal: null }, `${name} should exit 0 on SIGTERM, ended with ${describeExit(exits.get(name))}\n${cluster.logs(name)}`);
    }
  } catch (error) {
    t.diagnostic(`cluster output:\n${cluster.logs()}`);
    throw error;
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
});
