// §6.4.1: where a leader lease starts. The lease runs from when the newest heartbeat a majority
// acknowledged was SENT — a lower bound on when the voters heard it and started ignoring candidates —
// never from when its acknowledgement arrived, which can be much later. The simulator reaches this
// rule too (the stale-lease schedule holds acknowledgements back in every second round; see
// docs/simulation.md and sim/mutations.test.ts); this test pins it on one core, where the tick
// arithmetic is plain.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RaftCore } from './core.js';
import type { RaftCoreMutations } from './mutations.js';
import { becomeLeader, drain, drainMessages, encoder, msg, newCore, tickN } from './testing/helpers.js';
import { mulberry32 } from './testing/rng.js';

const LEASE = { readOnlyMode: 'lease_based', checkQuorum: true, leaseSafetyMarginTicks: 2 } as const;

/** newCore's leader of {1, 2, 3} (electionTicks 10, margin 2: a lease lasts 8 ticks), with a deliberate bug. */
function mutantLeaseLeader(mutations: RaftCoreMutations): RaftCore {
  return new RaftCore(
    {
      id: '1',
      electionTicks: 10,
      heartbeatTicks: 1,
      preVote: false,
      maxAppendEntries: 64,
      maxAppendBytes: 1 << 20,
      maxInflightAppends: 256,
      random: mulberry32(1),
      ...LEASE,
    },
    { hardState: { term: 0, vote: '', commit: 0 }, entries: [], initialMembership: { voters: ['1', '2', '3'], learners: [] }, applied: 0 },
    mutations,
  );
}

/** The acknowledgement of a heartbeat arrives 5 ticks after it was sent: for how many more ticks does the leader read from its lease? */
function ticksServedAfterLateAck(core: RaftCore): number {
  becomeLeader(core);
  drain(core);
  core.step(msg('append_response', '2', '1', 1, { index: 1 }));
  drain(core);
  core.tick();
  const [beat] = drainMessages(core, 'heartbeat');
  assert.ok(beat !== undefined);
  tickN(core, 5);
  drain(core);
  core.step(msg('heartbeat_response', '2', '1', 1, { index: beat.index }));
  drain(core);
  const limit = 10;
  for (let ticks = 0; ticks < limit; ticks++) {
    core.readIndex(encoder.encode(`read-${ticks}`));
    if (drain(core).readStates.length === 0) return ticks;
    core.tick();
  }
  return limit;
}

describe('§6.4.1 the lease counts from the send time of the acknowledged heartbeat', () => {
  it('§6.4.1 a late acknowledgement extends the lease only to electionTicks − margin after its heartbeat was sent', () => {
    // electionTicks 10, margin 2: a lease lasts 8 ticks of the leader's clock; 8 − 5 = 3 more.
    assert.equal(ticksServedAfterLateAck(newCore('1', ['1', '2', '3'], LEASE)), 3);
  });

  it('§6.4.1 the leaseCountsFromAckArrival mutant breaks exactly this rule: it counts the 8 ticks from the arrival', () => {
    assert.equal(ticksServedAfterLateAck(mutantLeaseLeader({ leaseCountsFromAckArrival: true })), 8);
  });
});
