// Unit tests tied to sentences of the Raft paper (Ongaro & Ousterhout, "In Search of an
// Understandable Consensus Algorithm", 2014), in the spirit of etcd-io/raft's raft_paper_test.go,
// plus the persistence rules of the Ready contract that make those sentences hold across crashes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Network } from './testing/network.js';
import {
  becomeLeader,
  drain,
  drainMessages,
  encoder,
  entriesWithTerms,
  msg,
  newCore,
  sent,
  textOf,
  tickN,
} from './testing/helpers.js';
import type { Entry, Message } from './types.js';

const ELECTION = 10;

describe('§5.1 terms', () => {
  it('§5.1 a server that sees a larger term updates its term and reverts to follower, whatever its role', () => {
    const follower = newCore('1', ['1', '2', '3']);
    const candidate = newCore('1', ['1', '2', '3']);
    candidate.campaign();
    const leader = newCore('1', ['1', '2', '3']);
    becomeLeader(leader);
    for (const core of [follower, candidate, leader]) {
      core.step(msg('append', '2', '1', 5, { index: 0, logTerm: 0 }));
      const s = core.status();
      assert.equal(s.term, 5);
      assert.equal(s.role, 'follower');
      assert.equal(s.leaderId, '2');
    }
  });

  it('§5.1 a request with a stale term is rejected: nothing changes, and the answer carries the current term', () => {
    const core = newCore('1', ['1', '2', '3'], { hardState: { term: 3 } });
    core.step(msg('append', '2', '1', 2, { index: 0, logTerm: 0, entries: entriesWithTerms([2]) }));
    assert.equal(core.status().lastIndex, 0);
    assert.equal(core.status().leaderId, '');
    const replies = drainMessages(core);
    assert.deepEqual(
      replies.map((m) => [m.type, m.to, m.term]),
      [['append_response', '2', 3]],
    );
  });

  it('§5.1 a leader that learns of a larger term from a rejection steps down', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    core.step(msg('append_response', '2', '1', 7));
    assert.equal(core.status().role, 'follower');
    assert.equal(core.status().term, 7);
  });
});

describe('§5.2 leader election', () => {
  it('§5.2 a follower that hears nothing for an election timeout becomes a candidate: it increments its term, votes for itself and requests votes', () => {
    const core = newCore('1', ['1', '2', '3']);
    tickN(core, 2 * ELECTION);
    const s = core.status();
    assert.equal(s.role, 'candidate');
    assert.equal(s.term, 1);
    assert.equal(s.vote, '1');
    const rd = drain(core);
    assert.deepEqual(rd.hardState, { term: 1, vote: '1', commit: 0 });
    assert.deepEqual(
      rd.messagesAfterPersist.map((m) => [m.type, m.to, m.term]),
      [
        ['vote', '2', 1],
        ['vote', '3', 1],
      ],
    );
  });

  it('§5.2 election timeouts are chosen randomly from [electionTicks, 2·electionTicks)', () => {
    const observed = new Set<number>();
    for (let seed = 1; seed <= 200; seed++) {
      const core = newCore('1', ['1', '2', '3'], { seed });
      let ticks = 0;
      while (core.status().role === 'follower') {
        core.tick();
        ticks++;
        assert.ok(ticks < 2 * ELECTION, `seed ${seed}: no campaign within 2·electionTicks`);
      }
      assert.ok(ticks >= ELECTION, `seed ${seed}: campaigned after only ${ticks} ticks`);
      observed.add(ticks);
    }
    // Spread over the range, so that split votes resolve.
    assert.ok(observed.size >= 8, `only ${observed.size} distinct timeouts`);
  });

  it('§5.2 a candidate wins an election if it receives votes from a majority of the servers', () => {
    const cases: { size: number; grants: string[]; role: string }[] = [
      { size: 1, grants: [], role: 'leader' },
      { size: 3, grants: [], role: 'candidate' },
      { size: 3, grants: ['2'], role: 'leader' },
      { size: 5, grants: ['2'], role: 'candidate' },
      { size: 5, grants: ['2', '3'], role: 'leader' },
    ];
    for (const { size, grants, role } of cases) {
      const voters = Array.from({ length: size }, (_, i) => String(i + 1));
      const core = newCore('1', voters);
      core.campaign();
      for (const from of grants) core.step(msg('vote_response', from, '1', 1));
      assert.equal(core.status().role, role, `size ${size} grants ${grants.join(',')}`);
    }
  });

  it('§5.2 a candidate that a majority rejects gives up and returns to follower', () => {
    const core = newCore('1', ['1', '2', '3']);
    core.campaign();
    core.step(msg('vote_response', '2', '1', 1, { reject: true }));
    assert.equal(core.status().role, 'candidate');
    core.step(msg('vote_response', '3', '1', 1, { reject: true }));
    assert.equal(core.status().role, 'follower');
    assert.equal(core.status().term, 1);
  });

  it('§5.2 each server votes for at most one candidate in a given term, on a first-come-first-served basis', () => {
    const core = newCore('1', ['1', '2', '3']);
    const ask = (from: string): Message | undefined => {
      core.step(msg('vote', from, '1', 1, { index: 0, logTerm: 0 }));
      return drainMessages(core, 'vote_response')[0];
    };
    assert.equal(ask('2')?.reject, false);
    assert.equal(ask('3')?.reject, true);
    assert.equal(ask('2')?.reject, false, 'a repeated request from the same candidate is granted again');
    assert.equal(core.status().vote, '2');
  });

  it('§5.2 a candidate that receives an append from a leader of its term recognizes it and becomes follower', () => {
    const core = newCore('1', ['1', '2', '3']);
    core.campaign();
    core.step(msg('append', '2', '1', 1, { index: 0, logTerm: 0 }));
    assert.equal(core.status().role, 'follower');
    assert.equal(core.status().leaderId, '2');
  });

  it('§5.2 if an election times out without a winner, the candidate starts a new election with a higher term', () => {
    const core = newCore('1', ['1', '2', '3']);
    core.campaign();
    assert.equal(core.status().term, 1);
    tickN(core, 2 * ELECTION);
    assert.equal(core.status().role, 'candidate');
    assert.equal(core.status().term, 2);
  });

  it('§5.2 leaders send periodic heartbeats to all followers to maintain their authority', () => {
    const core = newCore('1', ['1', '2', '3'], { heartbeatTicks: 3 });
    becomeLeader(core);
    drain(core);
    tickN(core, 2);
    assert.deepEqual(drainMessages(core, 'heartbeat'), []);
    core.tick();
    assert.deepEqual(
      drainMessages(core, 'heartbeat').map((m) => m.to),
      ['2', '3'],
    );
  });

  it('§5.2 a server remains in follower state as long as it receives valid heartbeats from a leader', () => {
    const core = newCore('1', ['1', '2', '3'], { hardState: { term: 1 } });
    for (let t = 0; t < 20 * ELECTION; t++) {
      if (t % (ELECTION - 1) === 0) core.step(msg('heartbeat', '2', '1', 1));
      core.tick();
    }
    assert.equal(core.status().role, 'follower');
    assert.equal(core.status().term, 1);
  });

  it('§5.2 split votes are resolved: randomized timeouts elect exactly one leader per term (many seeds)', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const net = Network.create(['1', '2', '3', '4', '5'], { seed });
      for (let t = 0; t < 10 * ELECTION && net.leader() === undefined; t++) {
        for (const id of net.ids()) net.tick(id);
        net.stabilize(); // the network checks election safety on every Ready
      }
      assert.ok(net.leader() !== undefined, `seed ${seed}: no leader`);
    }
  });
});

describe('§5.3 log replication', () => {
  it('§5.3 the leader appends the command to its log as a new entry, then issues appends to each of the other servers', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core);
    // The followers acknowledge the no-op, so the leader knows where their logs match.
    for (const from of ['2', '3']) core.step(msg('append_response', from, '1', 1, { index: 1 }));
    drain(core);
    const result = core.propose(encoder.encode('x'));
    assert.deepEqual(result, { kind: 'accepted', index: 2, term: 1 });
    const rd = drain(core);
    assert.deepEqual(
      rd.entries.map((e) => [e.index, e.term, textOf(e)]),
      [[2, 1, 'x']],
    );
    const appends = rd.messages.filter((m) => m.type === 'append');
    assert.deepEqual(
      appends.map((m) => m.to),
      ['2', '3'],
    );
    for (const m of appends) assert.deepEqual(m.entries.map((e) => e.index).at(-1), 2);
  });

  it('§5.3 a log entry is committed once the leader has replicated it on a majority; the leader then applies it', () => {
    const core = newCore('1', ['1', '2', '3', '4', '5']);
    becomeLeader(core);
    drain(core);
    core.propose(encoder.encode('x'));
    drain(core); // persisted on the leader
    core.step(msg('append_response', '2', '1', 1, { index: 2 }));
    assert.equal(core.status().commit, 0, 'two of five is no majority');
    core.step(msg('append_response', '3', '1', 1, { index: 2 }));
    assert.equal(core.status().commit, 2);
    const rd = drain(core);
    assert.deepEqual(
      rd.committedEntries.map((e) => e.index),
      [1, 2],
    );
    assert.equal(rd.hardState?.commit, 2);
  });

  it('§5.3 once a follower learns that an entry is committed, it applies it (in log order)', () => {
    const core = newCore('1', ['1', '2', '3'], { hardState: { term: 1 } });
    core.step(msg('append', '2', '1', 1, { index: 0, logTerm: 0, commit: 0, entries: entriesWithTerms([1, 1, 1]) }));
    assert.deepEqual(drain(core).committedEntries, []);
    core.step(msg('heartbeat', '2', '1', 1, { commit: 2 }));
    assert.deepEqual(
      drain(core).committedEntries.map((e) => e.index),
      [1, 2],
    );
    core.step(msg('append', '2', '1', 1, { index: 3, logTerm: 1, commit: 3 }));
    assert.deepEqual(
      drain(core).committedEntries.map((e) => e.index),
      [3],
    );
  });

  it('§5.3 if the follower does not find an entry with the same index and term as the preceding one, it refuses the new entries', () => {
    const log = entriesWithTerms([1, 1, 2]);
    for (const [index, logTerm] of [
      [3, 1], // same index, other term
      [4, 2], // beyond the end
    ] as const) {
      const core = newCore('1', ['1', '2', '3'], { log, hardState: { term: 2 } });
      core.step(msg('append', '2', '1', 2, { index, logTerm, entries: entriesWithTerms([2], index + 1) }));
      const [reply] = drainMessages(core, 'append_response');
      assert.equal(reply?.reject, true, `prev ${logTerm}/${index}`);
      assert.equal(reply?.index, index);
      assert.equal(core.status().lastIndex, 3);
    }
  });

  it('§5.3 if an existing entry conflicts with a new one (same index, different terms), the follower deletes it and all that follow', () => {
    const core = newCore('1', ['1', '2', '3'], { log: entriesWithTerms([1, 1, 2, 2, 2]), hardState: { term: 2, commit: 1 } });
    core.step(msg('append', '2', '1', 3, { index: 2, logTerm: 1, commit: 1, entries: entriesWithTerms([3], 3) }));
    const rd = drain(core);
    assert.deepEqual(
      rd.entries.map((e) => [e.index, e.term]),
      [[3, 3]],
      'the Ready tells the driver to overwrite from index 3',
    );
    assert.equal(core.status().lastIndex, 3);
    assert.deepEqual(
      sent(rd).map((m) => [m.type, m.index, m.reject]),
      [['append_response', 3, false]],
    );
  });

  it('§5.3 an append whose entries the follower already has deletes nothing (a stale or reordered append must not truncate)', () => {
    const core = newCore('1', ['1', '2', '3'], { log: entriesWithTerms([1, 1, 1, 1]), hardState: { term: 1 } });
    // A delayed append carrying entries 2..3 only, arriving after 4 was appended.
    core.step(msg('append', '2', '1', 1, { index: 1, logTerm: 1, entries: entriesWithTerms([1, 1], 2) }));
    assert.equal(core.status().lastIndex, 4);
    const rd = drain(core);
    assert.deepEqual(rd.entries, []);
    assert.deepEqual(
      sent(rd).map((m) => [m.type, m.index]),
      [['append_response', 3]],
    );
  });

  it('§5.3 the leader forces followers\u2019 logs to duplicate its own (Figure 7: missing, extra and conflicting entries)', () => {
    // Figure 7: the leader of term 8 and followers (a)–(f).
    const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const followers = [
      [1, 1, 1, 4, 4, 5, 5, 6, 6], // (a) missing one
      [1, 1, 1, 4], // (b) missing many
      [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], // (c) one extra uncommitted
      [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) extra entries of a later term
      [1, 1, 1, 4, 4, 4, 4], // (e) conflicting term 4 entries
      [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], // (f) conflicting terms 2 and 3
    ];
    for (const [i, followerLog] of followers.entries()) {
      const net = Network.create(['1', '2', '3']);
      net.preload('1', entriesWithTerms(leaderLog), { term: 8, vote: '', commit: 0 });
      net.preload('2', entriesWithTerms(followerLog), { term: 8, vote: '', commit: 0 });
      net.preload('3', entriesWithTerms(leaderLog), { term: 8, vote: '', commit: 0 });
      net.elect('1');
      assert.equal(net.leader(), '1', `case ${i}`);
      net.propose('1', 'after');
      net.stabilize();
      const expected = net.node('1').storage.entries.map((e) => `${e.term}/${e.index}`);
      assert.deepEqual(
        net.node('2').storage.entries.map((e) => `${e.term}/${e.index}`),
        expected,
        `case (${'abcdef'[i]})`,
      );
      assert.equal(net.core('2').status().commit, expected.length);
    }
  });

  it('§5.3 fast backtracking: a rejection skips a whole divergent term in one round trip', () => {
    // The follower holds many entries of a term the leader never saw.
    const net = Network.create(['1', '2', '3']);
    net.preload('1', entriesWithTerms([1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]), { term: 3, vote: '', commit: 0 });
    net.preload('3', entriesWithTerms([1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]), { term: 3, vote: '', commit: 0 });
    net.preload('2', entriesWithTerms([1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]), { term: 3, vote: '', commit: 0 });
    net.core('1').campaign();
    let rejections = 0;
    net.stabilize(undefined, (e) => {
      if (e.kind === 'deliver') {
        rejections += e.deliveries.filter((d) => d.message.type === 'append_response' && d.message.reject).length;
      }
    });
    assert.equal(rejections, 1, 'one rejection, not one per divergent entry');
    assert.deepEqual(
      net.node('2').storage.entries.map((e) => e.term),
      [1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4],
    );
  });
});

describe('§5.4 safety', () => {
  it('§5.4.1 vote is denied to a candidate whose log is less up to date (last term compared first)', () => {
    // The voter's log ends at 2/3 (term 2, index 3).
    const cases: { logTerm: number; index: number; granted: boolean; why: string }[] = [
      { logTerm: 1, index: 10, granted: false, why: 'older last term, even with a longer log' },
      { logTerm: 2, index: 2, granted: false, why: 'same last term, shorter log' },
      { logTerm: 2, index: 3, granted: true, why: 'same last term, same length' },
      { logTerm: 2, index: 4, granted: true, why: 'same last term, longer log' },
      { logTerm: 3, index: 1, granted: true, why: 'newer last term, even with a shorter log' },
    ];
    for (const { logTerm, index, granted, why } of cases) {
      const core = newCore('1', ['1', '2', '3'], { log: entriesWithTerms([1, 1, 2]), hardState: { term: 2 } });
      core.step(msg('vote', '2', '1', 3, { logTerm, index }));
      const rd = drain(core);
      const [reply] = rd.messagesAfterPersist;
      assert.equal(reply?.type, 'vote_response', why);
      assert.equal(reply?.reject, !granted, why);
      assert.equal(core.status().vote, granted ? '2' : '', why);
    }
  });

  it('§5.4.2 a leader does not commit an entry from a previous term by counting replicas (Figure 8)', () => {
    // The leader of term 3 holds 1/1 and 2/2 (from the leader of term 2, never committed).
    const core = newCore('1', ['1', '2', '3'], { log: entriesWithTerms([1, 2]), hardState: { term: 2, commit: 1 } });
    becomeLeader(core);
    assert.equal(core.status().term, 3);
    drain(core);
    // A majority holds 2/2 — still not committed: it is of an earlier term.
    core.step(msg('append_response', '2', '1', 3, { index: 2 }));
    assert.equal(core.status().commit, 1);
    assert.deepEqual(drain(core).committedEntries, []);
  });

  it('§5.4.2 a new leader commits earlier entries indirectly, by committing its no-op entry of the current term', () => {
    const core = newCore('1', ['1', '2', '3'], { log: entriesWithTerms([1, 2]), hardState: { term: 2, commit: 1 } });
    becomeLeader(core);
    const rd = drain(core);
    assert.deepEqual(
      rd.entries.map((e) => [e.index, e.term, e.type]),
      [[3, 3, 'noop']],
      'the leader appends a no-op of its term on election',
    );
    core.step(msg('append_response', '2', '1', 3, { index: 3 }));
    assert.equal(core.status().commit, 3);
    assert.deepEqual(
      drain(core).committedEntries.map((e) => e.index),
      [2, 3],
    );
  });

  it('§5.4.3 leader completeness: a candidate missing a committed entry cannot win', () => {
    const net = Network.create(['1', '2', '3']);
    net.elect('1');
    net.isolate('3');
    net.propose('1', 'committed');
    net.stabilize();
    assert.equal(net.core('1').status().commit, 2);
    net.heal();
    net.isolate('1');
    // 3 lacks the committed entry: 2 refuses it; 2 itself can win.
    net.elect('3');
    assert.notEqual(net.leader(), '3');
    net.elect('2');
    assert.equal(net.core('2').status().role, 'leader');
    assert.deepEqual(net.applied('2'), ['committed']);
  });
});

describe('persistence: the Ready carries what must be durable before a message leaves', () => {
  it('vote grant leaves only in messagesAfterPersist, together with the hardState that records it', () => {
    const core = newCore('1', ['1', '2', '3']);
    core.step(msg('vote', '2', '1', 1, { index: 0, logTerm: 0 }));
    const rd = drain(core);
    assert.deepEqual(rd.hardState, { term: 1, vote: '2', commit: 0 });
    assert.deepEqual(rd.messages, []);
    assert.deepEqual(
      rd.messagesAfterPersist.map((m) => [m.type, m.reject]),
      [['vote_response', false]],
    );
  });

  it('append acknowledgement leaves only in messagesAfterPersist, together with the entries it acknowledges', () => {
    const core = newCore('1', ['1', '2', '3'], { hardState: { term: 1 } });
    core.step(msg('append', '2', '1', 1, { index: 0, logTerm: 0, entries: entriesWithTerms([1, 1]) }));
    const rd = drain(core);
    assert.deepEqual(
      rd.entries.map((e) => e.index),
      [1, 2],
    );
    assert.deepEqual(rd.messages, []);
    assert.deepEqual(
      rd.messagesAfterPersist.map((m) => [m.type, m.index]),
      [['append_response', 2]],
    );
  });

  it('vote requests leave only after the candidate\u2019s new term and self-vote are durable', () => {
    const core = newCore('1', ['1', '2', '3']);
    core.campaign();
    const rd = drain(core);
    assert.deepEqual(rd.hardState, { term: 1, vote: '1', commit: 0 });
    assert.deepEqual(rd.messages, []);
    assert.deepEqual(
      rd.messagesAfterPersist.map((m) => m.type),
      ['vote', 'vote'],
    );
  });

  it('the leader\u2019s own entries count toward a majority only once persisted (self acknowledgement on advance())', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    const rd = core.ready(); // the no-op is handed out for persisting...
    assert.deepEqual(
      rd.entries.map((e) => e.type),
      ['noop'],
    );
    core.step(msg('append_response', '2', '1', 1, { index: 1 }));
    assert.equal(core.status().commit, 0, 'one follower plus an unpersisted leader is not a majority');
    core.advance(); // ...and now it is durable
    assert.equal(core.status().commit, 1);
  });

  it('a single-node cluster commits only after persisting', () => {
    const core = newCore('1', ['1']);
    core.campaign();
    assert.equal(core.status().role, 'leader');
    core.propose(encoder.encode('x'));
    assert.equal(core.status().commit, 0);
    const first = drain(core);
    assert.deepEqual(first.committedEntries, []);
    const second = drain(core);
    assert.deepEqual(
      second.committedEntries.map((e) => e.index),
      [1, 2],
    );
  });

  it('ready() twice without advance() is a driver bug; events in between go into the next Ready', () => {
    const core = newCore('1', ['1', '2', '3'], { hardState: { term: 1 } });
    core.step(msg('append', '2', '1', 1, { index: 0, logTerm: 0, entries: entriesWithTerms([1]) }));
    const rd = core.ready();
    assert.equal(core.hasReady(), false);
    assert.throws(() => core.ready(), /before advance/);
    core.step(msg('append', '2', '1', 1, { index: 1, logTerm: 1, entries: entriesWithTerms([1], 2) }));
    core.advance();
    assert.deepEqual(
      rd.entries.map((e) => e.index),
      [1],
    );
    const next = drain(core);
    assert.deepEqual(
      next.entries.map((e) => e.index),
      [2],
    );
    assert.deepEqual(
      next.messagesAfterPersist.map((m) => m.index),
      [2],
    );
  });

  it('restart restores term, vote, commit, log and membership exactly', () => {
    const net = Network.create(['1', '2', '3']);
    net.elect('1');
    net.propose('1', 'a');
    net.propose('1', 'b');
    net.stabilize();
    assert.deepEqual(net.core('1').proposeMembershipChange({ kind: 'add_learner', node: '4' }).kind, 'accepted');
    net.stabilize();
    for (const id of net.ids()) {
      const before = net.core(id).status();
      net.restart(id);
      const after = net.core(id).status();
      assert.deepEqual(
        { term: after.term, vote: after.vote, commit: after.commit, lastIndex: after.lastIndex, membership: after.membership },
        { term: before.term, vote: before.vote, commit: before.commit, lastIndex: before.lastIndex, membership: before.membership },
        `node ${id}`,
      );
      assert.equal(after.role, 'follower');
    }
    // And the group carries on.
    net.elect('2');
    net.propose('2', 'c');
    net.stabilize();
    assert.deepEqual(net.applied('3'), ['a', 'b', 'c']);
  });

  it('a restored state that breaks the invariants is refused', () => {
    const entries: Entry[] = entriesWithTerms([1, 2]);
    assert.throws(() => newCore('1', ['1'], { log: entries, hardState: { term: 1 } }), /older than the last log entry/);
    assert.throws(() => newCore('1', ['1'], { log: entries, hardState: { term: 2, commit: 5 } }), /beyond the last entry/);
    assert.throws(() => newCore('1', ['1'], { log: [entries[1] as Entry], hardState: { term: 2 } }), /contiguous/);
  });
});
