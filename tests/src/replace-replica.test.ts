// Replacing a dead replica with real processes, the way docs/operations.md tells an operator to:
// a replica of g1 is SIGKILLed and treated as lost; a new, empty replica starts with --join; then
// `concord member add` (learner), `member promote` once it caught up, and `member remove` of the
// dead one, through the coordinators' public Cluster API. Defends: writes go on, Status and GetRing
// list the new membership, no acknowledged write is lost, and the new replica counts toward the
// majority: the group survives losing one more of its original replicas.
//
// Timings are reported (t.diagnostic), never asserted; the bounds below only keep a broken build
// from hanging.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Client } from '@grpc/grpc-js';
import { startLocalCluster } from './harness/cluster.js';
import { describeResult } from './harness/command.js';
import { clusterClient, kvClient } from './harness/grpc.js';
import { memberCommand, phaseWriter, promoteLearner } from './harness/membership.js';
import { fetchRing, fetchStatus, readBack, summarize } from './harness/verify.js';

const GROUP = 'g1';
/** Small, so the new replica's first contact is a snapshot rather than the whole log. */
const SNAPSHOT_EVERY = 100;
const KEYS_PER_PHASE = 200;
/** Liveness bounds: failure guards, not expected durations. */
const CATCH_UP_BOUND_MS = 15_000;
const PROMOTE_ATTEMPTS = 50;
const PROMOTE_PAUSE_MS = 100;

test('replace a dead replica: add a learner, promote it, remove the dead one; the group keeps its majority', { timeout: 90_000 }, async (t) => {
  const cluster = await startLocalCluster({ groups: [GROUP], shardArgs: ['--snapshot-every', String(SNAPSHOT_EVERY)] });
  const clients: Client[] = [];
  try {
    const kv = kvClient(cluster.coordinatorAddress);
    const meta = clusterClient(cluster.coordinatorAddress);
    clients.push(kv, meta);
    const phases = phaseWriter({ keyPrefix: 'replace', keysPerPhase: KEYS_PER_PHASE });
    const writePhase = (phase: string): Promise<void> => phases.write(phase, kv);

    // 1. Data, then g1-2 dies for good.
    await writePhase('before');
    const [g10, g11, g12] = cluster.shardNames(GROUP) as [string, string, string];
    const leaderBefore = await cluster.leaderOf(GROUP);
    t.diagnostic(`leader before: ${leaderBefore.name}; killing ${g12}`);
    await cluster.kill(g12, 'SIGKILL');
    await cluster.leaderOf(GROUP);
    await writePhase('degraded');

    // 2. A new, empty replica waits to be added.
    const g13 = await cluster.startJoiningShard(GROUP, 3);
    const newAddress = cluster.address(g13);

    // 3. The three operator steps, with the CLI against every coordinator.
    const added = await memberCommand(cluster.coordinatorAddresses, ['add', GROUP, 'g1-3', newAddress]);
    assert.match(added.stdout, /g1-3\s+\S+\s+learner/, describeResult(added));
    const caughtUp = await cluster.caughtUp(g13, { timeoutMs: CATCH_UP_BOUND_MS });
    assert.equal(caughtUp.role, 'LEARNER');

    const promoted = await promoteLearner(cluster.coordinatorAddresses, GROUP, 'g1-3', { attempts: PROMOTE_ATTEMPTS, pauseMs: PROMOTE_PAUSE_MS });
    assert.match(promoted.stdout, /g1-3\s+\S+\s+voter/);

    const removed = await memberCommand(cluster.coordinatorAddresses, ['remove', GROUP, 'g1-2']);
    assert.doesNotMatch(removed.stdout, /g1-2/, describeResult(removed));
    for (const id of ['g1-0', 'g1-1', 'g1-3']) assert.match(removed.stdout, new RegExp(`${id}\\s+\\S+\\s+voter`), describeResult(removed));

    // 4. Writes go on; Status and GetRing list the new membership.
    await writePhase('replaced');
    const expected = [cluster.address(g10), cluster.address(g11), newAddress].sort();
    const { response: ring } = await fetchRing(meta);
    assert.deepEqual([...(ring.groups.find((group) => group.groupId === GROUP)?.addresses ?? [])].sort(), expected);
    const status = await fetchStatus(meta);
    const g1 = status.groups.find((group) => group.groupId === GROUP);
    assert.deepEqual(g1?.members.map((m) => m.memberId).sort(), ['g1-0', 'g1-1', 'g1-3'], JSON.stringify(g1));

    // 5. One more original replica dies: g1-3 and the other one are a majority of three.
    const leaderNow = await cluster.leaderOf(GROUP);
    const victim = leaderNow.name === g13 ? g10 : leaderNow.name;
    t.diagnostic(`leader after the replacement: ${leaderNow.name}; killing ${victim}`);
    await cluster.kill(victim, 'SIGKILL');
    const survivor = await cluster.leaderOf(GROUP);
    t.diagnostic(`leader with ${victim} down: ${survivor.name}`);
    await writePhase('after');

    const problems = await readBack(kv, phases.outcomes, { concurrency: 8, checkVersions: false });
    assert.equal(problems.length, 0, summarize(problems));
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
});
