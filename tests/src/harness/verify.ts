// Checks shared by the fault tests: read every written key back and compare with what the writers
// were told, and where the ring says each key lives.
import { ReadConsistency } from '@concord/proto/common';
import type { ClusterClient, GetRingResponse, StatusResponse } from '@concord/proto/cluster';
import type { KVClient } from '@concord/proto/kv';
import { HashRing } from '@concord/ring';
import { describeError, forEachConcurrently, unary, withRetry } from './grpc.js';
import type { WriteOutcome } from './writer.js';

const READ_DEADLINE_MS = 5_000;
/** Reads are retried on UNAVAILABLE/DEADLINE_EXCEEDED: a process that just restarted may still be connecting. */
const READ_ATTEMPTS = 8;
const READ_BACKOFF_MS = 250;

export interface ReadBackOptions {
  concurrency: number;
  /**
   * Also require the version to equal the acknowledged one, for keys acknowledged on their first
   * attempt (exactly one write of them was ever sent, so no other version can exist).
   */
  checkVersions: boolean;
}

/**
 * Reads every attempted key through KV.Get (linearizable) and lists every violation:
 * an acknowledged key missing or holding another value, or an unacknowledged key holding a value
 * nobody wrote. An unacknowledged key may be absent or hold its value: its ack may have been lost.
 */
export async function readBack(kv: KVClient, outcomes: readonly WriteOutcome[], options: ReadBackOptions): Promise<string[]> {
  const problems: string[] = [];
  const attempted = outcomes.filter((outcome) => outcome.attempts > 0);
  await forEachConcurrently(attempted, options.concurrency, async (outcome) => {
    let response;
    try {
      response = await withRetry(
        () => unary(kv.get.bind(kv), { key: outcome.key, consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE }, READ_DEADLINE_MS),
        READ_ATTEMPTS,
        READ_BACKOFF_MS,
      );
    } catch (error) {
      problems.push(`${outcome.key}: Get failed: ${describeError(error)}`);
      return;
    }
    if (outcome.acked) {
      if (!response.found) {
        problems.push(`${outcome.key}: acknowledged (version ${outcome.ackedVersion}) but not found`);
      } else if (!response.value.equals(outcome.value)) {
        problems.push(`${outcome.key}: acknowledged ${JSON.stringify(outcome.value.toString())} but holds ${JSON.stringify(response.value.toString())}`);
      } else if (options.checkVersions && outcome.attempts === 1 && response.version !== outcome.ackedVersion) {
        problems.push(`${outcome.key}: acknowledged at version ${outcome.ackedVersion} but reads back at version ${response.version}`);
      }
    } else if (response.found && !response.value.equals(outcome.value)) {
      problems.push(`${outcome.key}: never acknowledged, yet holds ${JSON.stringify(response.value.toString())}, which was never written`);
    }
  });
  return problems;
}

/** Formats a list of problems for an assertion message: the count and the first few. */
export function summarize(problems: readonly string[], shown = 20): string {
  const more = problems.length > shown ? `\n  … and ${problems.length - shown} more` : '';
  return `${problems.length} problem(s):\n  ${problems.slice(0, shown).join('\n  ')}${more}`;
}

/** Cluster.GetRing, and the HashRing it describes (built with @concord/ring, independently of the server). */
export async function fetchRing(cluster: ClusterClient): Promise<{ response: GetRingResponse; ring: HashRing }> {
  const response = await withRetry(() => unary(cluster.getRing.bind(cluster), {}, READ_DEADLINE_MS), READ_ATTEMPTS, READ_BACKOFF_MS);
  const ring = new HashRing({
    epoch: response.epoch,
    vnodesPerGroup: response.vnodesPerGroup,
    groups: response.groups.map((group) => group.groupId),
  });
  return { response, ring };
}

export async function fetchStatus(cluster: ClusterClient): Promise<StatusResponse> {
  return withRetry(() => unary(cluster.status.bind(cluster), {}, READ_DEADLINE_MS), READ_ATTEMPTS, READ_BACKOFF_MS);
}

/** How many of `outcomes` each group owns, for every group of the ring (zero included). */
export function countByOwner(ring: HashRing, outcomes: readonly WriteOutcome[]): Map<string, number> {
  const counts = new Map<string, number>(ring.groups.map((group) => [group, 0]));
  for (const outcome of outcomes) {
    const owner = ring.ownerOf(outcome.key);
    counts.set(owner, (counts.get(owner) ?? 0) + 1);
  }
  return counts;
}
