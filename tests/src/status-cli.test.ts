// `concord status` against a real cluster, as an operator runs it: `--watch` prints successive
// snapshots (separated by a blank line when stdout is not a terminal) and stops after --count or
// on Ctrl-C; `--json` carries each shard group's share of the ring, which must be the share the
// ring of Cluster.GetRing gives it; and status still answers when the meta group has no leader.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ConcordClient } from '@concord/client';
import type { StatusResponse } from '@concord/proto/cluster';
import { HashRing } from '@concord/ring';
import { startLocalCluster, type LocalCluster } from './harness/cluster.js';
import { describeResult, runCommand, type CommandResult } from './harness/command.js';
import { childEnv, nodeBinary, repoRoot } from './harness/paths.js';
import { track } from './harness/reaper.js';

const CLI = 'packages/cli/bin/concord.js';
const GROUPS = ['g1', 'g2', 'g3'];
/** Bound on one CLI run (a liveness bound, not a timing assertion). */
const COMMAND_TIMEOUT_MS = 20_000;
const CLEAR_SCREEN = '\x1b[H\x1b[2J';

function concord(cluster: LocalCluster, args: readonly string[], addresses = cluster.coordinatorAddresses): Promise<CommandResult> {
  return runCommand(nodeBinary, [CLI, '--addr', addresses.join(','), ...args], { timeoutMs: COMMAND_TIMEOUT_MS });
}

/** The snapshots of a watch whose stdout is not a terminal: separated by one blank line. */
function snapshotsOf(stdout: string): string[] {
  return stdout.trimEnd().split('\n\n');
}

describe('concord status against a real cluster', () => {
  let cluster: LocalCluster;

  before(async () => {
    cluster = await startLocalCluster({ groups: GROUPS });
    const client = await ConcordClient.connect({ address: cluster.coordinatorAddresses.join(',') });
    try {
      for (let i = 0; i < 6; i++) await client.put(`status:${i}`, 'x');
    } finally {
      client.close();
    }
  });

  after(async () => {
    await cluster?.stop();
  });

  it('--watch --count 2 prints two snapshots, separated by a blank line, and ends', async () => {
    const result = await concord(cluster, ['status', '--watch', '0.2', '--count', '2']);
    assert.equal(result.code, 0, describeResult(result));
    assert.ok(!result.stdout.includes(CLEAR_SCREEN), 'no screen clearing into a pipe');
    const snapshots = snapshotsOf(result.stdout);
    assert.equal(snapshots.length, 2, describeResult(result));
    for (const snapshot of snapshots) {
      const lines = snapshot.split('\n');
      assert.match(lines[0]!, /^every 0\.2s · \d{4}-\d\d-\d\dT/, snapshot);
      assert.match(lines[1]!, /^ring epoch 1 · 3 shard groups · 6 keys · ring balance \d\.\d\d \(largest g\d .*%, smallest g\d .*%\)$/, snapshot);
      const leaders = lines.filter((line) => /│\s*leader\s*│/.test(line));
      assert.equal(leaders.length, 1 + GROUPS.length, `one leader in meta and in each shard group:\n${snapshot}`);
      // The RING column: one share per shard group, adding up to the whole ring (up to rounding).
      const shares = GROUPS.map((group) => {
        const row = lines.find((line) => line.includes(`shard ${group} `));
        assert.ok(row, `no row for shard ${group}:\n${snapshot}`);
        const share = /│\s*([\d.]+)%\s*│\s*$/.exec(row);
        assert.ok(share, `no ring share in: ${row}`);
        return Number(share[1]);
      });
      const total = shares.reduce((sum, share) => sum + share, 0);
      assert.ok(Math.abs(total - 100) <= 0.1 * GROUPS.length, `ring shares ${shares.join(' + ')} = ${total}%`);
    }
  });

  it('--json carries the share of the ring each group owns, as the ring of Cluster.GetRing gives it', async () => {
    const result = await concord(cluster, ['status', '--json', '--watch', '0.2', '--count', '2']);
    assert.equal(result.code, 0, describeResult(result));
    const snapshots = snapshotsOf(result.stdout).map((text) => JSON.parse(text) as StatusResponse);
    assert.equal(snapshots.length, 2, describeResult(result));

    const client = await ConcordClient.connect({ address: cluster.coordinatorAddresses.join(','), routing: 'coordinator' });
    let ring: HashRing;
    try {
      const response = await client.ring();
      ring = new HashRing({ epoch: response.epoch, vnodesPerGroup: response.vnodesPerGroup, groups: response.groups.map((group) => group.groupId) });
    } finally {
      client.close();
    }
    const expected = ring.shares();
    for (const status of snapshots) {
      assert.deepEqual(status.groups.map((group) => group.groupId), GROUPS);
      for (const group of status.groups) {
        const share = expected.get(group.groupId);
        assert.ok(share !== undefined && Math.abs(group.ringShare - share) < 1e-12, `${group.groupId}: ringShare ${group.ringShare}, the ring gives ${share}`);
      }
      assert.ok(Math.abs(status.groups.reduce((sum, group) => sum + group.ringShare, 0) - 1) < 1e-9);
    }
  });

  it('--watch without --count runs until Ctrl-C (SIGINT), then exits 0', async () => {
    const child = spawn(nodeBinary, [CLI, '--addr', cluster.coordinatorAddresses.join(','), 'status', '--watch', '0.2'], {
      cwd: repoRoot,
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    let stdout = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    const bound = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
    try {
      // Interrupt once the second snapshot has started, so the watch is known to refresh.
      await new Promise<void>((resolve) => {
        child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
          stdout += chunk;
          if (snapshotsOf(stdout).length >= 2) resolve();
        });
        void exited.then(() => resolve());
      });
      child.kill('SIGINT');
      const exit = await exited;
      assert.deepEqual(exit, { code: 0, signal: null }, `stdout:\n${stdout}\nstderr:\n${stderr}`);
      assert.ok(snapshotsOf(stdout).length >= 2, stdout);
    } finally {
      clearTimeout(bound);
    }
  });

  it('answers with no meta leader: the coordinators that are down show UNREACHABLE, the shard groups as usual', async () => {
    const leader = await cluster.metaLeader();
    const [survivor, other] = cluster.coordinatorNames.filter((name) => name !== leader.name) as [string, string];
    await cluster.kill(leader.name);
    await cluster.kill(other);
    // One coordinator of three: no majority, so no meta leader and no ring to fetch.
    const result = await concord(cluster, ['status'], [cluster.address(survivor)]);
    assert.equal(result.code, 0, describeResult(result));
    const lines = result.stdout.split('\n');
    assert.equal(lines.filter((line) => /│\s*UNREACHABLE\s*│/.test(line)).length, 2, result.stdout);
    for (const group of GROUPS) assert.ok(lines.some((line) => line.includes(`shard ${group} `)), result.stdout);
    assert.equal(lines.filter((line) => /│\s*leader\s*│/.test(line)).length, GROUPS.length, `a leader in each shard group, none in meta:\n${result.stdout}`);
  });
});
