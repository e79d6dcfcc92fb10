// §6.4.1: where a leader lease starts. The simulator cannot reach this rule yet (docs/simulation.md,
// "Known blind spots"), so it is pinned here: the lease runs from when the newest heartbeat a
// majority acknowledged was SENT — a lower bound on when the voters heard it and started ignoring
// candidates — never from when its acknowledgement arrived, which can be much later.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { becomeLeader, drain, drainMessages, encoder, msg, newCore, tickN } from './testing/helpers.js';

describe('§6.4.1 the lease counts from the send time of the acknowledged heartbeat', () => {
  it('§6.4.1 a late acknowledgement extends the lease only to electionTicks − margin after its heartbeat was sent', () => {
    // electionTicks 10, margin 2: a lease lasts 8 ticks of the leader's clock.
    const core = newCore('1', ['1', '2', '3'], { readOnlyMode: 'lease_based', checkQuorum: true, leaseSafetyMarginTicks: 2 });
    becomeLeader(core);
    drain(core);
    core.step(msg('append_response', '2', '1', 1, { index: 1 }));
    drain(core);
    core.tick();
    const [beat] = drainMessages(core, 'heartbeat');
    assert.ok(beat !== undefined);
    // The acknowledgement of that heartbeat arrives 5 ticks after it was sent.
    tickN(core, 5);
    drain(core);
    core.step(msg('heartbeat_response', '2', '1', 1, { index: beat.index }));
    drain(core);
    const servedFor = (limit: number): number => {
      for (let ticks = 0; ticks < limit; ticks++) {
        core.readIndex(encoder.encode(`read-${ticks}`));
        if (drain(core).readStates.length === 0) return ticks;
        core.tick();
      }
      return limit;
    };
    // 8 − 5 = 3 more ticks; counted from the acknowledgement's arrival it would be 8.
    assert.equal(servedFor(8), 3);
  });
});
