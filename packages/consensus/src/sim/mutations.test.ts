// Mutation tests of the simulator: the production core with one deliberate bug (raft/mutations.ts)
// must fail a seed within a bounded number of seeds of the default seed mix — the directed
// scenarios (figure8.ts, stale-lease.ts) are what reach these bugs — and the failing seed must
// replay identically, in process and from the command line, while the production core passes every
// seed up to it. Each bound is far above the first failing seed measured (docs/simulation.md), so
// that a small change in the seed mix does not break the test, but a checker or schedule that
// stops reaching the bug does.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RaftCoreMutations } from '../raft/mutations.js';
import type { OptionalCheck } from './checkers.js';
import { runSimulation, type SimulationResult } from './simulator.js';

/** The most seeds a mutant may take to be caught. */
const SEED_BOUND = 200;

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

function explain(result: SimulationResult): string {
  const f = result.failure;
  if (f === undefined) return `SEED=${result.seed} passed`;
  return `SEED=${result.seed}: ${f.check} at step ${f.tick}: ${f.message}\n  setup: ${result.setup}\n  ${f.trace.slice(-15).join('\n  ')}`;
}

function firstFailure(mutations: RaftCoreMutations, skipChecks: readonly OptionalCheck[] = []): SimulationResult | undefined {
  for (let seed = 1; seed <= SEED_BOUND; seed++) {
    const result = runSimulation({ seed, mutations, skipChecks });
    if (!result.passed) return result;
  }
  return undefined;
}

/** The failing seed replays to the same failure, and the production core passes every seed up to it. */
function assertReplaysAndProductionPasses(failing: SimulationResult, mutations: RaftCoreMutations, skipChecks: readonly OptionalCheck[] = []): void {
  const again = runSimulation({ seed: failing.seed, mutations, skipChecks });
  assert.equal(again.digest, failing.digest, `SEED=${failing.seed} replayed to a different digest`);
  assert.deepEqual(again.failure, failing.failure);
  for (let seed = 1; seed <= failing.seed; seed++) {
    const result = runSimulation({ seed, skipChecks });
    assert.ok(result.passed, `the production core fails a seed its mutant was run on: ${explain(result)}`);
  }
}

/** `npm run sim -- --seed N --mutant M` prints SEED=N, the failing check and the same digest. */
function assertCliReplays(failing: SimulationResult, mutant: string): void {
  let output: string;
  try {
    output = execFileSync(process.execPath, [MAIN, '--seed', String(failing.seed), '--mutant', mutant], { encoding: 'utf8' });
    assert.fail(`the command line passed SEED=${failing.seed} with --mutant ${mutant}`);
  } catch (error) {
    const failed = error as { status?: number; stdout?: string };
    assert.equal(failed.status, 1, String(error));
    output = failed.stdout ?? '';
  }
  assert.match(output, new RegExp(`^SEED=${failing.seed} FAILED: `, 'm'));
  assert.match(output, new RegExp(`^SEED=${failing.seed} git=`, 'm'));
  assert.match(output, new RegExp(`failed: ${failing.failure?.check ?? '?'} `));
  assert.match(output, new RegExp(`digest ${failing.digest}`));
  assert.match(output, new RegExp(`replay: npm run sim -- --seed ${failing.seed} --mutant ${mutant} --verbose`));
}

describe('mutation tests: the simulator catches the bugs it used to be blind to', () => {
  it(`§5.4.2 (Figure 8): a leader that commits an earlier term's entry by counting replicas fails within ${SEED_BOUND} seeds`, () => {
    const mutations: RaftCoreMutations = { commitEarlierTermByCounting: true };
    const failing = firstFailure(mutations);
    assert.ok(failing !== undefined, `no seed in 1..${SEED_BOUND} caught a core that commits earlier-term entries by counting`);
    assert.equal(failing.scenario, 'figure-8', explain(failing));
    assert.ok(
      ['leader completeness', 'state machine safety', 'linearizability'].includes(failing.failure?.check ?? ''),
      explain(failing),
    );
    console.log(`# commit-earlier-term: first failing seed ${failing.seed} (${failing.failure?.check})`);
    assertReplaysAndProductionPasses(failing, mutations);
    assertCliReplays(failing, 'commit-earlier-term');
  });

  it(`§6.4.1: a lease that ignores clock drift serves a stale read within ${SEED_BOUND} seeds (read index check)`, () => {
    const mutations: RaftCoreMutations = { leaseIgnoresClockDrift: true };
    const failing = firstFailure(mutations);
    assert.ok(failing !== undefined, `no seed in 1..${SEED_BOUND} caught a lease without a drift margin`);
    assert.equal(failing.scenario, 'stale-lease', explain(failing));
    assert.equal(failing.failure?.check, 'read index', explain(failing));
    console.log(`# lease-ignores-drift: first failing seed ${failing.seed} (${failing.failure?.check})`);
    assertReplaysAndProductionPasses(failing, mutations);
    assertCliReplays(failing, 'lease-ignores-drift');
  });

  it('§6.4.1: the stale lease read is also in the history: with the read index check off, linearizability fails', () => {
    const mutations: RaftCoreMutations = { leaseIgnoresClockDrift: true };
    const skip: OptionalCheck[] = ['read index'];
    const failing = firstFailure(mutations, skip);
    assert.ok(failing !== undefined, `no seed in 1..${SEED_BOUND} produced a non-linearizable history with a lease without a drift margin`);
    assert.equal(failing.failure?.check, 'linearizability', explain(failing));
    assert.match(failing.failure?.message ?? '', /not linearizable: key "lease-probe"/);
    console.log(`# lease-ignores-drift, history only: first failing seed ${failing.seed}`);
    assertReplaysAndProductionPasses(failing, mutations, skip);
  });

  it(`§6.4.1: a lease counted from when the acknowledgement arrived serves a stale read within ${SEED_BOUND} seeds (read index check)`, () => {
    const mutations: RaftCoreMutations = { leaseCountsFromAckArrival: true };
    const failing = firstFailure(mutations);
    assert.ok(failing !== undefined, `no seed in 1..${SEED_BOUND} caught a lease counted from the acknowledgement's arrival`);
    assert.equal(failing.scenario, 'stale-lease', explain(failing));
    assert.equal(failing.failure?.check, 'read index', explain(failing));
    console.log(`# lease-from-ack: first failing seed ${failing.seed} (${failing.failure?.check})`);
    assertReplaysAndProductionPasses(failing, mutations);
    assertCliReplays(failing, 'lease-from-ack');
  });
});
