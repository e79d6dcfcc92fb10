// Moving leadership with real processes, the way docs/operations.md tells an operator to before
// taking a leader's machine down: `concord member move-leader <group> <member-id>` through the
// coordinators' public Cluster API, for a shard group and for the coordinators' meta group.
// Defends: the named voter leads afterwards (every replica agrees), writes acknowledged before and
// after all read back, asking for the member that already leads succeeds, and a member that is not
// a voter is refused (FAILED_PRECONDITION) with the group's leader unchanged.
//
// The bounds below only keep a broken build from hanging; no timing is asserted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Client } from '@grpc/grpc-js';
import { startLocalCluster } from './harness/cluster.js';
import { describeResult } from './harness/command.js';
import { clusterClient, kvClient, sleep } from './harness/grpc.js';
import { memberCommand, phaseWriter } from './harness/membership.js';
import { fetchStatus, readBack, summarize } from './harness/verify.js';

const GROUP = 'g1';
const KEYS_PER_PHASE = 50;
/** Liveness bound for the meta group to report its new leader: a failure guard. */
const META_REPORT_BOUND_MS = 10_000;

test('concord member move-leader hands a shard group and the meta group to the named voter', { timeout: 90_000 }, async (t) => {
  const cluster = await startLocalCluster({ groups: [GROUP] });
  const clients: Client[] = [];
  try {
    const kv = kvClient(cluster.coordinatorAddress);
    const meta = clusterClient(cluster.coordinatorAddress);
    clients.push(kv, meta);
    const phases = phaseWriter({ keyPrefix: 'move-leader', keysPerPhase: KEYS_PER_PHASE });
    await phases.write('before', kv);

    // A shard group: to a follower, then again to the member that now leads.
    const before = await cluster.leaderOf(GROUP);
    const target = (await cluster.groupStatus(GROUP)).find((answer) => 'status' in answer && answer.name !== before.name);
    assert.ok(target !== undefined && 'status' in target, 'a follower of g1 answers Status');
    const targetId = target.status.memberId;
    t.diagnostic(`g1: moving the leadership from ${before.status.memberId} to ${targetId}`);
    const moved = await memberCommand(cluster.coordinatorAddresses, ['move-leader', GROUP, targetId]);
    const reported = new RegExp(`^group ${GROUP}: ${targetId} leads \\(term (\\d+)\\)$`, 'm').exec(moved.stdout);
    assert.ok(reported !== null, describeResult(moved));
    assert.ok(Number(reported[1]) > before.status.term, describeResult(moved));
    const after = await cluster.leaderOf(GROUP);
    assert.equal(after.status.memberId, targetId, `every replica of ${GROUP} follows ${targetId}`);
    const again = await memberCommand(cluster.coordinatorAddresses, ['move-leader', GROUP, targetId, '--json']);
    assert.equal((JSON.parse(again.stdout) as { leaderId: string }).leaderId, targetId, describeResult(again));
    await phases.write('after-shard-move', kv);

    // Not a voter: refused, nothing changes.
    const refused = await memberCommand(cluster.coordinatorAddresses, ['move-leader', GROUP, 'g1-9'], { allowFailure: true });
    assert.notEqual(refused.code, 0, describeResult(refused));
    assert.match(refused.stderr, /refused to hand its leadership to g1-9: g1-9 is not a voter \(FAILED_PRECONDITION\)/, describeResult(refused));
    assert.equal((await cluster.leaderOf(GROUP)).status.memberId, targetId);

    // The meta group: to a coordinator that does not lead it.
    const metaBefore = (await fetchStatus(meta)).meta!;
    const metaTarget = metaBefore.members.find((member) => member.memberId !== metaBefore.leaderId)!.memberId;
    t.diagnostic(`meta: moving the leadership from ${metaBefore.leaderId} to ${metaTarget}`);
    const metaMoved = await memberCommand(cluster.coordinatorAddresses, ['move-leader', 'meta', metaTarget]);
    assert.match(metaMoved.stdout, new RegExp(`^group meta: ${metaTarget} leads \\(term \\d+\\)$`, 'm'), describeResult(metaMoved));
    const deadline = Date.now() + META_REPORT_BOUND_MS;
    let metaAfter = (await fetchStatus(meta)).meta!;
    while (metaAfter.leaderId !== metaTarget && Date.now() < deadline) {
      await sleep(100);
      metaAfter = (await fetchStatus(meta)).meta!;
    }
    assert.equal(metaAfter.leaderId, metaTarget, JSON.stringify(metaAfter));
    await phases.write('after-meta-move', kv);

    const problems = await readBack(kv, phases.outcomes, { concurrency: 8, checkVersions: false });
    assert.equal(problems.length, 0, summarize(problems));
  } finally {
    for (const client of clients) client.close();
    await cluster.stop();
  }
});
