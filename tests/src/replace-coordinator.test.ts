// Replacing a dead coordinator with real processes, the way docs/replace-coordinator.md tells an
// operator to: the meta leader is SIGKILLed and treated as lost; a new, empty coordinator starts
// with --join; then `concord member add meta` (learner), `member promote meta` once it caught up,
// and `member remove meta` of the dead one, through the coordinators' public Cluster API. Then
// another original coordinator is SIGKILLed. Defends: KV goes on through the coordinators, the new
// coordinator included; Cluster.Status lists the new membership with roles; no acknowledged write is
// lost; and the new coordinator counts toward the majority: the meta group survives losing a
// second original member, which it could not without it.
//
// Timings are reported (t.diagnostic), never asserted; the bounds below only keep a broken build
// from hanging.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Client } from '@grpc/grpc-js';
import { MemberRole, type StatusResponse } from '@concord/proto/cluster';
import { startLocalCluster, type LocalCluster } from './harness/cluster.js';
import { describeResult } from './harness/command.js';
import { startJoiningCoordinator, type JoiningCoordinator } from './harness/coordinator-join.js';
import { clusterClient, describeError, kvClient, sleep } from './harness/grpc.js';
import { memberCommand, phaseWriter, promoteLearner } from './harness/membership.js';
import { fetchRing, fetchStatus, readBack, summarize } from './harness/verify.js';

const GROUPS = ['g1', 'g2'];
const NEW_ID = 'coordinator-3';
/** Small, so the meta log is compacted during the test and the new coordinator may catch up from a snapshot of the meta state. */
const SNAPSHOT_EVERY = 5;
const KEYS_PER_PHASE = 150;
/** Liveness bounds: failure guards, not expected durations. */
const CATCH_UP_BOUND_MS = 15_000;
const ELECTION_BOUND_MS = 15_000;
const PROMOTE_ATTEMPTS = 50;
const POLL_MS = 100;

test('replace a dead coordinator: add one with --join as a learner, promote it, remove the dead one; the meta group keeps its majority', { timeout: 120_000 }, async (t) => {
  const cluster = await startLocalCluster({ groups: GROUPS, coordinators: 3, coordinatorArgs: ['--snapshot-every', String(SNAPSHOT_EVERY)] });
  const clients: Client[] = [];
  let joined: JoiningCoordinator | undefined;
  const kvAt = (address: string) => {
    const client = kvClient(address);
    clients.push(client);
    return client;
  };
  const clusterApiAt = (address: string) => {
    const client = clusterClient(address);
    clients.push(client);
    return client;
  };
  try {
    const phases = phaseWriter({ keyPrefix: 'replace-coordinator', keysPerPhase: KEYS_PER_PHASE });
    const writePhase = (phase: string, via: string): Promise<void> => phases.write(phase, kvAt(via), via);

    // 1. Data, then the meta leader dies for good; the other two elect a leader and serve.
    const firstLeader = await cluster.metaLeader();
    const lost = firstLeader.name;
    const originals = cluster.coordinatorNames.filter((name) => name !== lost);
    await writePhase('before', cluster.address(originals[0]!));
    t.diagnostic(`meta leader: ${lost}; killing it`);
    assert.deepEqual(await cluster.kill(lost, 'SIGKILL'), { code: null, signal: 'SIGKILL' });
    const secondLeader = await cluster.metaLeader({ timeoutMs: ELECTION_BOUND_MS });
    t.diagnostic(`meta leader with ${lost} down: ${secondLeader.name}`);
    await writePhase('degraded', cluster.address(originals[1]!));

    // 2. A new, empty coordinator waits to be added; until then it knows no leader.
    joined = await startJoiningCoordinator(cluster, NEW_ID, { args: ['--snapshot-every', String(SNAPSHOT_EVERY)] });
    const waiting = await joined.memberStatus();
    assert.equal(waiting.leaderId, '', 'a joining coordinator follows nobody before it is added');
    assert.match(waiting.member.error, /not a member of the meta group/);

    // 3. The three operator steps, with the CLI against every coordinator (the dead one included:
    //    the CLI passes over an address that refuses connections).
    const addresses = [...cluster.coordinatorAddresses, joined.address];
    const added = await memberCommand(addresses, ['add', 'meta', NEW_ID, joined.address]);
    assert.match(added.stdout, /^group meta:/m, describeResult(added));
    assert.match(added.stdout, new RegExp(`${NEW_ID}\\s+${escape(joined.address)}\\s+learner`), describeResult(added));
    const leaderCommit = (await cluster.metaLeader()).member.commitIndex;
    const caughtUp = await poll(`${NEW_ID} to apply index ${leaderCommit} as a learner`, CATCH_UP_BOUND_MS, async () => {
      const { member: self } = await joined!.memberStatus();
      return self.role === MemberRole.MEMBER_ROLE_LEARNER && self.appliedIndex >= leaderCommit ? self : undefined;
    });
    t.diagnostic(`${NEW_ID} caught up as a learner: applied ${caughtUp.appliedIndex}${joined.logged('installed a snapshot from the leader') ? ', from a snapshot' : ''}`);

    const promoted = await promoteLearner(addresses, 'meta', NEW_ID, { attempts: PROMOTE_ATTEMPTS, pauseMs: POLL_MS });
    assert.match(promoted.stdout, new RegExp(`${NEW_ID}\\s+\\S+\\s+voter`), describeResult(promoted));

    const removed = await memberCommand(addresses, ['remove', 'meta', lost]);
    assert.doesNotMatch(removed.stdout, new RegExp(`${lost}\\b`), describeResult(removed));
    for (const id of [...originals, NEW_ID]) assert.match(removed.stdout, new RegExp(`${id}\\s+\\S+\\s+voter`), describeResult(removed));

    // 4. Writes go on, through the new coordinator too; Status lists the new membership.
    await writePhase('replaced', joined.address);
    const replaced = await poll('Status to list the new meta membership, every member reachable', CATCH_UP_BOUND_MS, async () => {
      const status = await fetchStatus(clusterApiAt(cluster.address(originals[0]!)));
      const members = status.meta?.members ?? [];
      return members.length === 3 && members.every((each) => each.role !== MemberRole.MEMBER_ROLE_UNREACHABLE) ? status : undefined;
    });
    assert.deepEqual(metaIds(replaced), [...originals, NEW_ID].sort(), JSON.stringify(replaced.meta));
    assert.equal(replaced.meta?.members.find((each) => each.memberId === NEW_ID)?.address, joined.address);
    assert.deepEqual(metaRoles(replaced), ['FOLLOWER', 'FOLLOWER', 'LEADER']);

    // 5. One more original coordinator dies (the leader, if an original leads): the survivor and
    //    the new coordinator are a majority of three, and elect a leader between them if needed.
    const leaderId = replaced.meta?.leaderId ?? '';
    const victim = originals.includes(leaderId) ? leaderId : originals[0]!;
    const survivor = originals.find((name) => name !== victim)!;
    t.diagnostic(`meta leader after the replacement: ${leaderId}; killing ${victim}`);
    assert.deepEqual(await cluster.kill(victim, 'SIGKILL'), { code: null, signal: 'SIGKILL' });
    const after = await poll(`a meta leader among ${survivor} and ${NEW_ID}`, ELECTION_BOUND_MS, async () => {
      const status = await fetchStatus(clusterApiAt(joined!.address));
      return [survivor, NEW_ID].includes(status.meta?.leaderId ?? '') ? status : undefined;
    });
    t.diagnostic(`meta leader with ${victim} down: ${after.meta?.leaderId}`);
    await writePhase('after', joined.address);
    await writePhase('after-survivor', cluster.address(survivor));

    const final = await poll(`Status through ${survivor} to show a leader, a follower and ${victim} unreachable`, ELECTION_BOUND_MS, async () => {
      const status = await fetchStatus(clusterApiAt(cluster.address(survivor)));
      return metaRoles(status).join() === 'FOLLOWER,LEADER,UNREACHABLE' ? status : undefined;
    });
    assert.deepEqual(metaIds(final), [survivor, victim, NEW_ID].sort(), JSON.stringify(final.meta));
    assert.equal(final.meta?.members.find((each) => each.memberId === victim)?.role, MemberRole.MEMBER_ROLE_UNREACHABLE);
    const { response: ring } = await fetchRing(clusterApiAt(joined.address));
    assert.deepEqual(ring.groups.map((group) => group.groupId), GROUPS);

    // Every acknowledged write, from every phase, reads back through the new coordinator.
    const problems = await readBack(kvAt(joined.address), phases.outcomes, { concurrency: 8, checkVersions: false });
    assert.equal(problems.length, 0, summarize(problems));
  } catch (error) {
    t.diagnostic(`${cluster.logs()}\n${joined?.tail() ?? ''}`);
    throw error;
  } finally {
    for (const client of clients) client.close();
    await joined?.stop().catch(() => undefined);
    await cluster.stop();
  }
});

/** Polls `check` every POLL_MS until it returns a value, or fails after `boundMs` with the last answer. */
async function poll<T>(what: string, boundMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + boundMs;
  let last = 'no answer yet';
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
      last = 'not yet';
    } catch (error) {
      last = describeError(error);
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${boundMs} ms waiting for ${what} (last: ${last})`);
    await sleep(POLL_MS);
  }
}

function metaIds(status: StatusResponse): string[] {
  return (status.meta?.members ?? []).map((each) => each.memberId).sort();
}

/** The meta members' roles by name, sorted: ['FOLLOWER', 'FOLLOWER', 'LEADER']. */
function metaRoles(status: StatusResponse): string[] {
  return (status.meta?.members ?? []).map((each) => MemberRole[each.role] ?? String(each.role)).map((role) => role.replace(/^MEMBER_ROLE_/, '')).sort();
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
