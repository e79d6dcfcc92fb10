// Log compaction and snapshot transfer (Raft paper §7, thesis chapter 5).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Network } from './testing/network.js';
import { becomeLeader, drain, drainMessages, encoder, entriesWithTerms, msg, newCore } from './testing/helpers.js';
import type { SnapshotMeta } from './types.js';

const membership = { voters: ['1', '2', '3'], learners: [] };

/** A leader of term 1 whose log holds entries 1..n (committed and applied) and was compacted to `compactTo`. */
function compactedLeader(n: number, compactTo: number) {
  const core = newCore('1', ['1', '2', '3']);
  becomeLeader(core);
  drain(core);
  // Only 2 answers: 3 stays in probe, still at index 1 (its first probe unanswered).
  core.step(msg('append_response', '2', '1', 1, { index: 1 }));
  for (let i = 2; i <= n; i++) core.propose(encoder.encode(`e${i}`));
  drain(core);
  core.step(msg('append_response', '2', '1', 1, { index: n }));
  drain(core);
  drain(core);
  assert.equal(core.status().applied, n);
  core.compact(compactTo);
  return core;
}

describe('§7 log compaction', () => {
  it('§7 compact(index) discards the entries up to index; the boundary entry\u2019s term stays known', () => {
    const core = compactedLeader(6, 4);
    const s = core.status();
    assert.equal(s.firstIndex, 5);
    assert.equal(s.lastIndex, 6);
    // Follower 2 is at 6: appends continue from the boundary without a snapshot.
    core.propose(encoder.encode('e7'));
    const appends = drainMessages(core, 'append').filter((m) => m.to === '2');
    assert.deepEqual(
      appends.map((m) => [m.index, m.logTerm, m.entries.map((e) => e.index)]),
      [[6, 1, [7]]],
    );
  });

  it('§7 compaction beyond the applied index is refused (the state machine has not snapshotted it)', () => {
    const core = newCore('1', ['1'], { log: entriesWithTerms([1, 1, 1]), hardState: { term: 1, commit: 3 }, applied: 2 });
    assert.throws(() => core.compact(3), /only 2 is applied/);
    core.compact(2);
    assert.equal(core.status().firstIndex, 3);
    assert.deepEqual(core.snapshotMetaAt(2), { index: 2, term: 1, membership: { voters: ['1'], learners: [] } });
  });
});

describe('§7 snapshot transfer', () => {
  it('§7 the leader sends a snapshot to a follower that needs compacted entries, and waits in snapshot state', () => {
    const core = compactedLeader(6, 4);
    // Follower 3 never answered: the probe it needs starts at index 1, which is gone.
    core.step(msg('heartbeat_response', '3', '1', 1));
    const [snap] = drainMessages(core, 'snapshot');
    assert.equal(snap?.to, '3');
    assert.deepEqual(snap?.snapshot, { index: 4, term: 1, membership });
    assert.equal(core.status().progress?.['3']?.state, 'snapshot');
    // Nothing more goes to 3 until the snapshot is acknowledged.
    core.propose(encoder.encode('e7'));
    assert.deepEqual(
      drainMessages(core).filter((m) => m.to === '3' && m.type !== 'heartbeat'),
      [],
    );
    core.step(msg('snapshot_response', '3', '1', 1, { index: 4 }));
    assert.equal(core.status().progress?.['3']?.state, 'replicate');
    const appends = drainMessages(core, 'append').filter((m) => m.to === '3');
    assert.deepEqual(
      appends.map((m) => [m.index, m.entries.map((e) => e.index)]),
      [[4, [5, 6, 7]]],
    );
  });

  it('§7 a failed snapshot stream returns the follower to probe; the next heartbeat response retries', () => {
    const core = compactedLeader(6, 4);
    core.step(msg('heartbeat_response', '3', '1', 1));
    assert.equal(drainMessages(core, 'snapshot').length, 1);
    core.reportSnapshot('3', false);
    assert.equal(core.status().progress?.['3']?.state, 'probe');
    assert.deepEqual(drainMessages(core, 'snapshot'), [], 'paused until the follower is heard from');
    core.step(msg('heartbeat_response', '3', '1', 1));
    assert.equal(drainMessages(core, 'snapshot').length, 1);
  });

  it('§7 a follower installs a snapshot newer than its log: it discards the log and acknowledges once the snapshot is durable', () => {
    const core = newCore('2', ['1', '2', '3'], { log: entriesWithTerms([1, 1]), hardState: { term: 1, commit: 1 }, applied: 1 });
    const snapshot: SnapshotMeta = { index: 10, term: 3, membership };
    core.step(msg('snapshot', '1', '2', 3, { index: 10, logTerm: 3, snapshot }));
    const rd = drain(core);
    assert.deepEqual(rd.snapshot, snapshot);
    assert.deepEqual(rd.hardState, { term: 3, vote: '', commit: 10 });
    assert.deepEqual(rd.committedEntries, [], 'the state machine is restored from the snapshot, not replayed');
    assert.deepEqual(rd.messages, []);
    assert.deepEqual(
      rd.messagesAfterPersist.map((m) => [m.type, m.index]),
      [['snapshot_response', 10]],
    );
    const s = core.status();
    assert.deepEqual([s.firstIndex, s.lastIndex, s.commit, s.applied], [11, 10, 10, 10]);
    // The log continues right after the snapshot.
    core.step(msg('append', '1', '2', 3, { index: 10, logTerm: 3, commit: 11, entries: entriesWithTerms([3], 11) }));
    assert.deepEqual(
      drain(core).committedEntries.map((e) => e.index),
      [11],
    );
  });

  it('§7 a follower ignores a snapshot that is not newer than its commit index', () => {
    const core = newCore('2', ['1', '2', '3'], { log: entriesWithTerms([1, 1, 1, 1]), hardState: { term: 1, commit: 4 }, applied: 4 });
    core.step(msg('snapshot', '1', '2', 1, { index: 3, logTerm: 1, snapshot: { index: 3, term: 1, membership } }));
    const rd = drain(core);
    assert.equal(rd.snapshot, undefined);
    assert.equal(core.status().lastIndex, 4);
    assert.deepEqual(
      rd.messagesAfterPersist.map((m) => [m.type, m.index]),
      [['snapshot_response', 4]],
    );
  });

  it('§7 if the follower holds the snapshot\u2019s last entry, it keeps the entries after it and only advances its commit', () => {
    const core = newCore('2', ['1', '2', '3'], { log: entriesWithTerms([1, 1, 1, 1, 1]), hardState: { term: 1, commit: 1 }, applied: 1 });
    core.step(msg('snapshot', '1', '2', 1, { index: 3, logTerm: 1, snapshot: { index: 3, term: 1, membership } }));
    const rd = drain(core);
    assert.equal(rd.snapshot, undefined);
    assert.equal(core.status().lastIndex, 5);
    assert.equal(core.status().commit, 3);
    assert.deepEqual(
      rd.committedEntries.map((e) => e.index),
      [2, 3],
    );
  });

  it('§7 a snapshot whose membership predates the receiver\u2019s addition is installed; the entries after it restore the configuration', () => {
    const net = Network.create(['1', '2', '3']);
    net.addNode('4', { voters: [], learners: [] });
    net.elect('1');
    for (let i = 0; i < 5; i++) net.propose('1', `v${i}`);
    net.stabilize();
    net.compact('1', 6); // membership at 6: voters 1 2 3, no learner yet
    net.core('1').proposeMembershipChange({ kind: 'add_learner', node: '4' });
    net.stabilize();
    assert.equal(net.node('4').storage.snapshot?.index, 6);
    assert.deepEqual(net.node('4').storage.snapshot?.membership, membership);
    assert.deepEqual(net.core('4').membership(), { voters: ['1', '2', '3'], learners: ['4'] });
    assert.deepEqual(net.applied('4'), net.applied('1'));
  });

  it('§7 a lagging follower catches up through a snapshot and then through appends (network)', () => {
    const net = Network.create(['1', '2', '3']);
    net.elect('1');
    net.isolate('3');
    for (let i = 0; i < 20; i++) net.propose('1', `v${i}`);
    net.stabilize();
    net.compact('1', 15);
    net.heal();
    net.tick('1');
    net.stabilize();
    assert.equal(net.node('3').storage.snapshot?.index, 15);
    net.propose('1', 'after');
    net.stabilize();
    assert.deepEqual(net.applied('3'), net.applied('1'));
    assert.equal(net.applied('3').length, 21);
  });

  it('§7 restart from a snapshot plus the entries after it restores the same log, commit and membership', () => {
    const net = Network.create(['1', '2', '3']);
    net.elect('1');
    for (let i = 0; i < 5; i++) net.propose('1', `v${i}`);
    net.stabilize();
    net.core('1').proposeMembershipChange({ kind: 'add_learner', node: '4' });
    net.stabilize();
    net.propose('1', 'v5');
    net.stabilize();
    net.compact('2', 7);
    const before = net.core('2').status();
    net.restart('2');
    const after = net.core('2').status();
    assert.deepEqual(
      [after.term, after.vote, after.commit, after.firstIndex, after.lastIndex, after.membership],
      [before.term, before.vote, before.commit, 8, before.lastIndex, before.membership],
    );
    assert.deepEqual(after.membership, { voters: ['1', '2', '3'], learners: ['4'] });
    net.stabilize();
    assert.deepEqual(net.applied('2'), net.applied('1'));
  });
});
