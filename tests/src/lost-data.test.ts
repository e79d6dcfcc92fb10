// A member that lost its data must not come back as a new one. With real processes: a replica of g1
// and a coordinator are SIGKILLed, their data dirs deleted, and each is started again with its
// unchanged command line, as a Kubernetes pod whose volume was lost would be. Defends: each exits
// with status 2 and a message naming the member, the peer that knows it and the fix; the group and
// the meta group keep serving, and no acknowledged write is lost. Then the fix Kubernetes allows
// (the pod name is the member id): `concord member remove`, the member starts empty again under the
// same id (no longer a member, so it is let in), `member add` and `promote` make it a voter that
// counts toward the majority.
//
// Timings are never asserted; the bounds below only keep a broken build from hanging.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Client } from '@grpc/grpc-js';
import { startLocalCluster, type LocalCluster } from './harness/cluster.js';
import { describeResult } from './harness/command.js';
import { kvClient } from './harness/grpc.js';
import { memberCommand, phaseWriter, promoteLearner } from './harness/membership.js';
import { readBack, summarize } from './harness/verify.js';

const GROUP = 'g1';
const KEYS_PER_PHASE = 100;
/** Liveness bounds: failure guards, not expected durations. */
const CATCH_UP_BOUND_MS = 15_000;
const PROMOTE_ATTEMPTS = 50;
const PROMOTE_PAUSE_MS = 100;

test('a replica or coordinator restarted on an empty data dir refuses to start; the groups keep serving', { timeout: 120_000 }, async (t) => {
  const cluster = await startLocalCluster({ groups: [GROUP] });
  const clients: Client[] = [];
  try {
    const kv = kvClient(cluster.coordinatorAddress);
    clients.push(kv);
    const phases = phaseWriter({ keyPrefix: 'lost', keysPerPhase: KEYS_PER_PHASE });
    const writePhase = (phase: string): Promise<void> => phases.write(phase, kv);

    // 1. Data on every replica, then g1-2 loses its data dir and comes back with the same flags.
    await writePhase('before');
    const [g10, g11, g12] = cluster.shardNames(GROUP) as [string, string, string];
    await cluster.kill(g12, 'SIGKILL');
    await rm(join(cluster.dataDir, 'g1-2'), { recursive: true, force: true });
    // Twice: a refused start leaves the data dir as empty as it found it.
    for (let attempt = 1; attempt <= 2; attempt++) {
      const refusal = await refusedStart(cluster, g12);
      t.diagnostic(`attempt ${attempt}: ${refusal.split('\n').findLast((line) => line.includes('[stderr]')) ?? refusal}`);
      assert.match(refusal, /member g1-2 of group g1 refuses to start/);
      assert.match(refusal, /g1-[01] at 127\.0\.0\.1:\d+ \(term \d+, commit \d+\) has heard from g1-2/);
      assert.match(refusal, /concord member remove g1 g1-2/);
      assert.match(refusal, /--join/);
    }
    await cluster.leaderOf(GROUP);
    await writePhase('refused');

    // 2. The same for a coordinator: the meta group keeps serving.
    const coordinator = cluster.coordinatorNames[2]!;
    await cluster.kill(coordinator, 'SIGKILL');
    await rm(join(cluster.dataDir, 'coordinator-2'), { recursive: true, force: true });
    const metaRefusal = await refusedStart(cluster, coordinator);
    assert.match(metaRefusal, /member coordinator-2 of group meta refuses to start/);
    assert.match(metaRefusal, /concord member remove meta coordinator-2/);
    await writePhase('meta-refused');

    // 3. The fix under the same id: remove it; started again it is no longer a member and is let in
    //    (empty, waiting); add it, promote it once it caught up.
    const removed = await memberCommand(cluster.coordinatorAddresses, ['remove', GROUP, 'g1-2']);
    assert.doesNotMatch(removed.stdout, /g1-2/, describeResult(removed));
    await cluster.restart(g12);
    const added = await memberCommand(cluster.coordinatorAddresses, ['add', GROUP, 'g1-2', cluster.address(g12)]);
    assert.match(added.stdout, /g1-2\s+\S+\s+learner/, describeResult(added));
    await cluster.caughtUp(g12, { timeoutMs: CATCH_UP_BOUND_MS });
    const promoted = await promoteLearner(cluster.coordinatorAddresses, GROUP, 'g1-2', { attempts: PROMOTE_ATTEMPTS, pauseMs: PROMOTE_PAUSE_MS });
    assert.match(promoted.stdout, /g1-2\s+\S+\s+voter/);
    await writePhase('replaced');

    // 4. g1-2 counts toward the majority: the group survives losing another original replica.
    const leader = await cluster.leaderOf(GROUP);
    const victim = leader.name === g12 ? g10 : leader.name;
    t.diagnostic(`leader: ${leader.name}; killing ${victim} (${[g10, g11, g12].filter((name) => name !== victim).join(' and ')} remain)`);
    await cluster.kill(victim, 'SIGKILL');
    await cluster.leaderOf(GROUP);
    await writePhase('after');

    const problems = await readBack(kv, phases.outcomes, { concurrency: 8, checkVersions: false });
    assert.equal(problems.length, 0, summarize(problems));
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
});

/** Starts `name` again, expecting the refusal: exit status 2; returns what it printed. */
async function refusedStart(cluster: LocalCluster, name: string): Promise<string> {
  const exitsBefore = cluster.exits(name).length;
  const error = await cluster.restart(name).then(
    () => assert.fail(`${name} started on an empty data dir, though its group had heard from it`),
    (reason: unknown) => reason,
  );
  const exits = cluster.exits(name);
  assert.equal(exits.length, exitsBefore + 1, String(error));
  assert.deepEqual(exits[exits.length - 1], { code: 2, signal: null }, String(error));
  return error instanceof Error ? error.message : String(error);
}
