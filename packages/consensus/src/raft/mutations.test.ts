// The deliberate bugs of mutations.ts break exactly the rule they name, and a core built the usual
// way has none of them. The simulator's mutation tests (sim/mutations.test.ts) rely on both.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RaftCore } from './core.js';
import type { RaftCoreMutations } from './mutations.js';
import { becomeLeader, drain, drainMessages, encoder, entriesWithTerms, msg, newCore } from './testing/helpers.js';
import { mulberry32 } from './testing/rng.js';
import type { Entry, NodeId, RaftRestoredState } from './types.js';

function mutantCore(
  id: NodeId,
  voters: NodeId[],
  mutations: RaftCoreMutations,
  setup: { log?: Entry[]; term?: number; commit?: number; lease?: boolean } = {},
): RaftCore {
  const log = setup.log ?? [];
  const restored: RaftRestoredState = {
    hardState: { term: setup.term ?? log.at(-1)?.term ?? 0, vote: '', commit: setup.commit ?? 0 },
    entries: log,
    initialMembership: { voters, learners: [] },
    applied: 0,
  };
  const lease = setup.lease === true ? { readOnlyMode: 'lease_based' as const, checkQuorum: true, leaseSafetyMarginTicks: 3 } : {};
  return new RaftCore(
    {
      id,
      electionTicks: 10,
      heartbeatTicks: 1,
      preVote: false,
      checkQuorum: false,
      maxAppendEntries: 64,
      maxAppendBytes: 1 << 20,
      maxInflightAppends: 256,
      random: mulberry32(1),
      ...lease,
    },
    restored,
    mutations,
  );
}

/** A lease leader whose heartbeat of tick 1 was acknowledged by one follower: how many ticks later does it still read from its lease? */
function leaseTicks(core: RaftCore): number {
  becomeLeader(core);
  drain(core);
  core.step(msg('append_response', '2', '1', core.status().term, { index: core.status().lastIndex }));
  drain(core);
  core.tick();
  const [beat] = drainMessages(core, 'heartbeat');
  assert.ok(beat !== undefined);
  core.step(msg('heartbeat_response', '2', '1', core.status().term, { index: beat.index }));
  drain(core);
  for (let ticks = 0; ticks < 20; ticks++) {
    core.readIndex(encoder.encode(`r${ticks}`));
    if (drain(core).readStates.length === 0) return ticks;
    core.tick();
  }
  return Infinity;
}

describe('deliberate bugs for mutation tests (mutations.ts)', () => {
  it('commitEarlierTermByCounting commits an entry of an earlier term held by a majority (§5.4.2, Figure 8)', () => {
    // The leader of term 3 holds 1/1 and 2/2; a majority holds 2/2 (paper.test.ts: not committed).
    const correct = newCore('1', ['1', '2', '3'], { log: entriesWithTerms([1, 2]), hardState: { term: 2, commit: 1 } });
    const mutant = mutantCore('1', ['1', '2', '3'], { commitEarlierTermByCounting: true }, { log: entriesWithTerms([1, 2]), term: 2, commit: 1 });
    for (const core of [correct, mutant]) {
      becomeLeader(core);
      drain(core);
      core.step(msg('append_response', '2', '1', 3, { index: 2 }));
    }
    assert.equal(correct.status().commit, 1);
    assert.equal(mutant.status().commit, 2);
    assert.deepEqual(
      drain(mutant).committedEntries.map((e) => e.index),
      [2],
    );
  });

  it('leaseIgnoresClockDrift keeps the lease for electionTicks − 1 ticks instead of electionTicks − margin (§6.4.1)', () => {
    assert.equal(leaseTicks(mutantCore('1', ['1', '2', '3'], {}, { lease: true })), 10 - 3);
    assert.equal(leaseTicks(mutantCore('1', ['1', '2', '3'], { leaseIgnoresClockDrift: true }, { lease: true })), 10 - 1);
  });

  it('a core constructed without the third argument has no mutation', () => {
    const core = newCore('1', ['1', '2', '3'], { readOnlyMode: 'lease_based', checkQuorum: true, leaseSafetyMarginTicks: 3 });
    assert.equal(leaseTicks(core), 10 - 3);
  });
});
