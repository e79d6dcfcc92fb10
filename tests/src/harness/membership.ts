// What the membership tests (replacing a replica or a coordinator, a member that lost its data)
// share: the `concord member …` CLI against the coordinators, promoting a learner once it has
// caught up, and phases of numbered writes whose outcomes are all read back at the end.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { KVClient } from '@concord/proto/kv';
import { describeResult, runCommand, type CommandResult } from './command.js';
import { sleep } from './grpc.js';
import { nodeBinary } from './paths.js';
import { writeKeys, type WriteOutcome } from './writer.js';

/** Bound on one `concord member …` run. */
const MEMBER_COMMAND_TIMEOUT_MS = 20_000;

/** `concord member …` against `addresses`; fails the test on a non-zero exit unless allowed. */
export async function memberCommand(addresses: readonly string[], args: readonly string[], { allowFailure = false } = {}): Promise<CommandResult> {
  const result = await runCommand(nodeBinary, ['packages/cli/bin/concord.js', '--addr', addresses.join(','), 'member', ...args], {
    timeoutMs: MEMBER_COMMAND_TIMEOUT_MS,
  });
  if (!allowFailure) assert.equal(result.code, 0, describeResult(result));
  return result;
}

/** Liveness bounds of promoteLearner: failure guards, not expected durations. */
export interface PromoteBounds {
  attempts: number;
  pauseMs: number;
}

/**
 * `concord member promote <group> <memberId>`, repeated while the leader refuses with
 * FAILED_PRECONDITION; fails the test on any other failure or once the attempts run out.
 * Returns the successful run.
 */
export async function promoteLearner(addresses: readonly string[], group: string, memberId: string, bounds: PromoteBounds): Promise<CommandResult> {
  let promoted: CommandResult | undefined;
  for (let attempt = 0; attempt < bounds.attempts; attempt++) {
    promoted = await memberCommand(addresses, ['promote', group, memberId], { allowFailure: true });
    if (promoted.code === 0) break;
    // The leader promotes only a learner whose log matches its commit; anything else is a bug.
    assert.match(promoted.stderr, /FAILED_PRECONDITION/, describeResult(promoted));
    await sleep(bounds.pauseMs);
  }
  assert.equal(promoted?.code, 0, promoted === undefined ? 'promote never ran' : describeResult(promoted));
  return promoted!;
}

/** Phases of `keysPerPhase` distinct keys each, named `<keyPrefix>-<phase>-<index>`. */
export interface PhaseWriter {
  /** Every write of every phase so far, for readBack. */
  readonly outcomes: WriteOutcome[];
  /** Writes one phase through `kv`; fails the test unless every write is acknowledged. `via` names the address in the failure. */
  write(phase: string, kv: KVClient, via?: string): Promise<void>;
}

export function phaseWriter({ keyPrefix, keysPerPhase }: { keyPrefix: string; keysPerPhase: number }): PhaseWriter {
  const run = randomBytes(4).toString('hex');
  const outcomes: WriteOutcome[] = [];
  return {
    outcomes,
    async write(phase, kv, via) {
      const report = await writeKeys({
        kv,
        count: keysPerPhase,
        keyOf: (index) => `${keyPrefix}-${phase}-${String(index).padStart(4, '0')}`,
        valueOf: (index) => Buffer.from(`value-${phase}-${index}-${run}`),
        concurrency: 8,
        deadlineMs: 3_000,
        retryBackoffMs: [100, 200, 400, 800, 1_600],
        timeBoundMs: 30_000,
      });
      outcomes.push(...report.outcomes);
      const through = via === undefined ? '' : ` through ${via}`;
      assert.equal(report.ackedCount, keysPerPhase, `phase ${phase}${through}: every write is acknowledged (${[...report.errors].join('; ')})`);
    },
  };
}
