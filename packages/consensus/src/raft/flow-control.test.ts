// Replication flow control (etcd-io/raft's tracker): probe / replicate states, the inflight window,
// and batching limits.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Progress, Inflights } from './progress.js';
import { becomeLeader, drain, drainMessages, encoder, msg, newCore, type CoreSetup } from './testing/helpers.js';
import type { RaftCore } from './core.js';

/** A leader whose no-op 2 has acknowledged (2 replicating); 3 is still being probed. */
function leaderWithReplicatingFollower(setup: CoreSetup = {}): RaftCore {
  const core = newCore('1', ['1', '2', '3'], setup);
  becomeLeader(core);
  drain(core);
  core.step(msg('append_response', '2', '1', 1, { index: 1 }));
  drain(core);
  return core;
}

function appendsTo(core: RaftCore, to: string): number[][] {
  return drainMessages(core, 'append')
    .filter((m) => m.to === to)
    .map((m) => m.entries.map((e) => e.index));
}

describe('replication flow control', () => {
  it('probe: the leader sends one append at a time and waits for its answer', () => {
    const core = leaderWithReplicatingFollower();
    assert.equal(core.status().progress?.['3']?.state, 'probe');
    core.propose(encoder.encode('x'));
    assert.deepEqual(appendsTo(core, '3'), [], 'the no-op probe to 3 is unanswered');
    core.step(msg('append_response', '3', '1', 1, { index: 1 }));
    assert.equal(core.status().progress?.['3']?.state, 'replicate');
    assert.deepEqual(appendsTo(core, '3'), [[2]]);
  });

  it('replicate: at most maxInflightAppends appends are in flight; acknowledgements open the window again', () => {
    const core = leaderWithReplicatingFollower({ maxInflightAppends: 2, maxAppendEntries: 1 });
    for (let i = 0; i < 5; i++) core.propose(encoder.encode(`v${i}`));
    assert.deepEqual(appendsTo(core, '2'), [[2], [3]]);
    core.step(msg('append_response', '2', '1', 1, { index: 2 }));
    assert.deepEqual(appendsTo(core, '2'), [[4]]);
    core.step(msg('append_response', '2', '1', 1, { index: 4 }));
    assert.deepEqual(appendsTo(core, '2'), [[5], [6]]);
  });

  it('batching: one append carries at most maxAppendEntries entries and maxAppendBytes bytes; an oversized entry still goes', () => {
    const core = leaderWithReplicatingFollower({ maxAppendEntries: 3, maxAppendBytes: 10 });
    for (const size of [4, 4, 4, 1, 1, 1, 1, 25, 1]) core.propose(new Uint8Array(size));
    assert.deepEqual(appendsTo(core, '2'), [[2, 3], [4, 5, 6], [7, 8], [9], [10]]);
  });

  it('a rejection while replicating sends the follower back to probe from its match index', () => {
    const core = leaderWithReplicatingFollower();
    core.propose(encoder.encode('a'));
    drain(core); // append prev=1 [2] — lost
    core.propose(encoder.encode('b'));
    drain(core); // append prev=2 [3] — rejected: the follower lacks 2
    core.step(msg('append_response', '2', '1', 1, { index: 2, reject: true, rejectHint: 1, logTerm: 1 }));
    assert.equal(core.status().progress?.['2']?.state, 'probe');
    const [probe] = drainMessages(core, 'append').filter((m) => m.to === '2');
    assert.deepEqual([probe?.index, probe?.entries.map((e) => e.index)], [1, [2, 3]]);
  });

  it('a stale rejection (for an index already matched) is ignored', () => {
    const core = leaderWithReplicatingFollower();
    core.step(msg('append_response', '2', '1', 1, { index: 0, reject: true, rejectHint: 0 }));
    assert.equal(core.status().progress?.['2']?.state, 'replicate');
    assert.deepEqual(drainMessages(core, 'append'), []);
  });

  it('reportUnreachable stops pipelining to the follower until it answers a probe', () => {
    const core = leaderWithReplicatingFollower();
    core.reportUnreachable('2');
    assert.equal(core.status().progress?.['2']?.state, 'probe');
    core.propose(encoder.encode('a'));
    core.propose(encoder.encode('b'));
    assert.deepEqual(appendsTo(core, '2'), [[2, 3]], 'one probe');
    core.propose(encoder.encode('c'));
    assert.deepEqual(appendsTo(core, '2'), []);
  });

  it('a heartbeat response resends a lost probe', () => {
    const core = leaderWithReplicatingFollower();
    core.step(msg('heartbeat_response', '3', '1', 1));
    assert.deepEqual(appendsTo(core, '3'), [[1]]);
  });

  it('a full window without acknowledgements frees a slot on each heartbeat response, so lost appends get repaired', () => {
    const core = leaderWithReplicatingFollower({ maxInflightAppends: 1 });
    core.propose(encoder.encode('a'));
    assert.deepEqual(appendsTo(core, '2'), [[2]]);
    core.propose(encoder.encode('b'));
    assert.deepEqual(appendsTo(core, '2'), []);
    core.step(msg('heartbeat_response', '2', '1', 1));
    assert.deepEqual(appendsTo(core, '2'), [[3]]);
  });
});

describe('Progress and Inflights', () => {
  it('Inflights frees every append ending at or before an acknowledged index', () => {
    const w = new Inflights(3);
    w.add(2);
    w.add(5);
    w.add(9);
    assert.equal(w.full(), true);
    w.freeLE(5);
    assert.equal(w.count(), 1);
    assert.throws(() => {
      w.add(10);
      w.add(11);
      w.add(12);
    }, /overflow/);
  });

  it('maybeDecrTo in probe uses the hint but never goes below match+1, and ignores answers to other probes', () => {
    const pr = new Progress('2', 10, 4, false);
    pr.match = 3;
    pr.probeSent = true;
    assert.equal(pr.maybeDecrTo(7, 1), false, 'not the outstanding probe (9)');
    assert.equal(pr.maybeDecrTo(9, 1), true);
    assert.equal(pr.next, 4);
    assert.equal(pr.probeSent, false);
  });

  it('becomeProbe after a snapshot resumes after the snapshot', () => {
    const pr = new Progress('2', 3, 4, false);
    pr.becomeSnapshot(20);
    pr.becomeProbe();
    assert.equal(pr.next, 21);
  });

  it('maxUncommittedBytes: past the limit proposals are dropped, nothing appended, until commits catch up', () => {
    const core = leaderWithReplicatingFollower({ maxUncommittedBytes: 100 });
    const last = (): number => core.status().lastIndex;
    for (let i = 0; i < 4; i++) assert.equal(core.propose(new Uint8Array(25)).kind, 'accepted', `proposal ${i}`);
    const before = last();
    const refused = core.propose(new Uint8Array(1));
    assert.equal(refused.kind, 'dropped');
    assert.match(refused.kind === 'dropped' ? refused.reason : '', /100 bytes of entries not committed yet.*limit of 100 \(maxUncommittedBytes\)/);
    assert.equal(last(), before, 'a dropped proposal appends nothing');
    drain(core);
    // 2 acknowledges the first two (indexes 2 and 3): with the leader's own copy a majority, so
    // they commit and their 50 bytes no longer count.
    core.step(msg('append_response', '2', '1', 1, { index: 3 }));
    drain(core);
    assert.equal(core.status().commit, 3);
    assert.equal(core.propose(new Uint8Array(50)).kind, 'accepted', 'room again for 50 bytes');
    assert.equal(core.propose(new Uint8Array(1)).kind, 'dropped', 'and no more');
  });

  it('maxUncommittedBytes: one proposal larger than the limit goes through when nothing is uncommitted; 0 means no limit', () => {
    const core = leaderWithReplicatingFollower({ maxUncommittedBytes: 10 });
    assert.equal(core.propose(new Uint8Array(50)).kind, 'accepted');
    assert.equal(core.propose(new Uint8Array(1)).kind, 'dropped');
    const unlimited = leaderWithReplicatingFollower({ maxUncommittedBytes: 0 });
    for (let i = 0; i < 20; i++) assert.equal(unlimited.propose(new Uint8Array(1 << 20)).kind, 'accepted');
    assert.throws(() => newCore('1', ['1', '2', '3'], { maxUncommittedBytes: -1 }), /maxUncommittedBytes must be an integer ≥ 0/);
  });

  it('piggybackCommit: a follower that holds every entry learns a new commit index from the next heartbeat, not an empty append', () => {
    for (const piggybackCommit of [false, true]) {
      const core = leaderWithReplicatingFollower({ piggybackCommit });
      core.propose(encoder.encode('x'));
      assert.deepEqual(appendsTo(core, '2'), [[2]]);
      core.step(msg('append_response', '2', '1', 1, { index: 2 }));
      const appends = drainMessages(core, 'append').filter((m) => m.to === '2');
      assert.equal(core.status().commit, 2);
      if (piggybackCommit) {
        assert.deepEqual(appends, [], 'no empty append just to carry the commit index');
        core.tick();
        const [beat] = drainMessages(core, 'heartbeat').filter((m) => m.to === '2');
        assert.equal(beat?.commit, 2, 'the next heartbeat carries it');
      } else {
        // etcd-io/raft's way, the core's default: an empty append with the commit index at once.
        assert.deepEqual(appends.map((m) => [m.entries.length, m.commit]), [[0, 2]]);
      }
    }
  });

  it('piggybackCommit: a follower still missing entries gets them with the new commit index at once', () => {
    const core = leaderWithReplicatingFollower({ piggybackCommit: true, maxInflightAppends: 1 });
    core.propose(encoder.encode('x'));
    core.propose(encoder.encode('y'));
    assert.deepEqual(appendsTo(core, '2'), [[2, 3]]);
    core.propose(encoder.encode('z'));
    assert.deepEqual(appendsTo(core, '2'), [], 'the window of one append is full');
    core.step(msg('append_response', '2', '1', 1, { index: 3 }));
    const [next] = drainMessages(core, 'append').filter((m) => m.to === '2');
    assert.deepEqual(next?.entries.map((e) => e.index), [4]);
    assert.equal(next?.commit, 3, 'the entry goes out with the commit index its acknowledgement moved');
  });
});
