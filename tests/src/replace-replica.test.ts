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
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { Client } from '@grpc/grpc-js';
import { startLocalCluster, type LocalCluster } from './harness/cluster.js';
import { describeResult, runCommand, type CommandResult } from './harness/command.js';
import { clusterClient, kvClient, sleep } from './harness/grpc.js';
import { nodeBinary } from './harness/paths.js';
import { fetchRing, fetchStatus, readBack, summarize } from './harness/verify.js';
import { writeKeys, type WriteOutcome } from './harness/writer.js';

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
    const run = randomBytes(4).toString('hex');
    const outcomes: WriteOutcome[] = [];
    const writePhase = async (phase: string): Promise<void> => {
      const report = await writeKeys({
        kv,
        count: KEYS_PER_PHASE,
        keyOf: (index) => `replace-${phase}-${String(index).padStart(4, '0')}`,
        valueOf: (index) => Buffer.from(`value-${phase}-${index}-${run}`),
        concurrency: 8,
        deadlineMs: 3_000,
        retryBackoffMs: [100, 200, 400, 800, 1_600],
        timeBoundMs: 30_000,
      });
      outcomes.push(...report.outcomes);
      assert.equal(report.ackedCount, KEYS_PER_PHASE, `phase ${phase}: every write is acknowledged (${[...report.errors].join('; ')})`);
    };

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
    const added = await member(cluster, ['add', GROUP, 'g1-3', newAddress]);
    assert.match(added.stdout, /g1-3\s+\S+\s+learner/, describeResult(added));
    const caughtUp = await cluster.caughtUp(g13, { timeoutMs: CATCH_UP_BOUND_MS });
    assert.equal(caughtUp.role, 'LEARNER');

    let promoted: CommandResult | undefined;
    for (let attempt = 0; attempt < PROMOTE_ATTEMPTS; attempt++) {
      promoted = await member(cluster, ['promote', GROUP, 'g1-3'], { allowFailure: true });
      if (promoted.code === 0) break;
      // The leader promotes only a learner whose log matches its commit; anything else is a bug.
      assert.match(promoted.stderr, /FAILED_PRECONDITION/, describeResult(promoted));
      await sleep(PROMOTE_PAUSE_MS);
    }
    assert.equal(promoted?.code, 0, promoted === undefined ? 'promote never ran' : describeResult(promoted));
    assert.match(promoted!.stdout, /g1-3\s+\S+\s+voter/);

    const removed = await member(cluster, ['remove', GROUP, 'g1-2']);
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

    const problems = await readBack(kv, outcomes, { concurrency: 8, checkVersions: false });
    assert.equal(problems.length, 0, summarize(problems));
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
});

/** `concord member …` against every coordinator; fails the test on a non-zero exit unless allowed. */
async function member(cluster: LocalCluster, args: readonly string[], { allowFailure = false } = {}): Promise<CommandResult> {
  const result = await runCommand(nodeBinary, ['packages/cli/bin/concord.js', '--addr', cluster.coordinatorAddresses.join(','), 'member', ...args], {
    timeoutMs: 20_000,
  });
  if (!allowFailure) assert.equal(result.code, 0, describeResult(result));
  return result;
}
