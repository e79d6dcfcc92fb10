// RaftCore.applyCommittedSinceReady: what a leader's driver applies while it writes a Ready.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { becomeLeader, drain, encoder, msg, newCore, textOf } from './testing/helpers.js';

describe('applyCommittedSinceReady', () => {
  it('hands out entries committed by acknowledgements stepped mid-Ready, only up to what was durable before it', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core); // the leader's no-op at index 1, written
    const term = core.status().term;
    core.step(msg('append_response', '2', '1', term, { index: 1 }));
    drain(core);
    core.propose(encoder.encode('a'));
    const withA = core.ready();
    assert.deepEqual(withA.entries.map((e) => [e.index, textOf(e)]), [[2, 'a']]);
    core.advance(); // 'a' is durable here
    core.propose(encoder.encode('b'));
    const withB = core.ready(); // being written: not advanced
    assert.deepEqual(withB.entries.map((e) => e.index), [3]);

    assert.deepEqual(core.applyCommittedSinceReady(1, 2), [], 'nothing committed yet');
    core.step(msg('append_response', '2', '1', term, { index: 2 }));
    assert.deepEqual(core.applyCommittedSinceReady(0, 2), [], 'not before the driver applied what was handed out');
    assert.deepEqual(core.applyCommittedSinceReady(1, 2).map(textOf), ['a']);
    assert.equal(core.status().applied, 2, "'a' counts as applied");
    assert.deepEqual(core.applyCommittedSinceReady(2, 2), [], 'handed out once');
    // Both followers acknowledge 'b': committed, but not durable here before this Ready.
    core.step(msg('append_response', '2', '1', term, { index: 3 }));
    core.step(msg('append_response', '3', '1', term, { index: 3 }));
    assert.equal(core.status().commit, 3);
    assert.deepEqual(core.applyCommittedSinceReady(2, 2), []);
    // The next Ready hands out the rest, and only the rest.
    core.advance();
    const next = core.ready();
    assert.deepEqual(next.committedEntries.map(textOf), ['b']);
    core.advance();
    // Snapshots may be taken at what the driver applied.
    assert.equal(core.snapshotMetaAt(3).index, 3);
  });

  it('is empty on a follower', () => {
    const core = newCore('2', ['1', '2', '3']);
    core.step(msg('append', '1', '2', 1, { index: 0, logTerm: 0, entries: [{ index: 1, term: 1, type: 'normal', data: encoder.encode('x') }], commit: 1 }));
    drain(core);
    core.step(msg('append', '1', '2', 1, { index: 1, logTerm: 1, entries: [{ index: 2, term: 1, type: 'normal', data: encoder.encode('y') }], commit: 2 }));
    core.ready(); // a Ready in hand, not a leader
    assert.deepEqual(core.applyCommittedSinceReady(1, 2), []);
  });
});
