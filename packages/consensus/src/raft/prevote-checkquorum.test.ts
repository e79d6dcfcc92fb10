// Pre-vote (thesis §9.6), check-quorum (thesis §6.2) and leader stickiness (thesis §4.2.3): the
// extensions that keep a node which cannot win from disrupting a healthy cluster.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Network } from './testing/network.js';
import { becomeLeader, drain, drainMessages, entriesWithTerms, msg, newCore, tickN } from './testing/helpers.js';

const ELECTION = 10;

/** Ticks every node once and lets the network settle, `rounds` times. */
function elapse(net: Network, rounds: number, ids = net.ids()): void {
  for (let i = 0; i < rounds; i++) {
    for (const id of ids) net.tick(id);
    net.stabilize();
  }
}

describe('§9.6 pre-vote', () => {
  it('§9.6 a pre-candidate asks for votes with term+1 but does not increment its own term or vote', () => {
    const core = newCore('1', ['1', '2', '3'], { preVote: true, hardState: { term: 4 } });
    tickN(core, 2 * ELECTION);
    const rd = drain(core);
    assert.equal(core.status().role, 'pre_candidate');
    assert.equal(core.status().term, 4);
    assert.equal(rd.hardState, undefined, 'nothing to persist');
    assert.deepEqual(
      rd.messages.map((m) => [m.type, m.to, m.term]),
      [
        ['pre_vote', '2', 5],
        ['pre_vote', '3', 5],
      ],
    );
  });

  it('§9.6 a voter grants a pre-vote without changing its own term or vote', () => {
    const core = newCore('1', ['1', '2', '3'], { preVote: true, hardState: { term: 4 } });
    core.step(msg('pre_vote', '2', '1', 5, { logTerm: 0, index: 0 }));
    const rd = drain(core);
    assert.equal(rd.hardState, undefined);
    assert.deepEqual(
      rd.messagesAfterPersist.map((m) => [m.type, m.term, m.reject]),
      [['pre_vote_response', 5, false]],
    );
    assert.equal(core.status().term, 4);
    assert.equal(core.status().vote, '');
  });

  it('§9.6 a voter refuses a pre-vote from a candidate whose log is less up to date', () => {
    const core = newCore('1', ['1', '2', '3'], { preVote: true, log: entriesWithTerms([1, 2]), hardState: { term: 2 } });
    core.step(msg('pre_vote', '2', '1', 3, { logTerm: 1, index: 5 }));
    const [reply] = drainMessages(core, 'pre_vote_response');
    assert.equal(reply?.reject, true);
  });

  it('§9.6 a voter that heard from a leader within the election timeout refuses a pre-vote', () => {
    const core = newCore('1', ['1', '2', '3'], { preVote: true, hardState: { term: 1 } });
    core.step(msg('heartbeat', '2', '1', 1));
    drain(core);
    tickN(core, ELECTION - 1);
    core.step(msg('pre_vote', '3', '1', 2, { logTerm: 0, index: 0 }));
    assert.equal(drainMessages(core, 'pre_vote_response')[0]?.reject, true);
    core.tick(); // a full election timeout without the leader
    core.step(msg('pre_vote', '3', '1', 2, { logTerm: 0, index: 0 }));
    assert.equal(drainMessages(core, 'pre_vote_response')[0]?.reject, false);
  });

  it('§9.6 winning the pre-vote starts a real election in term+1', () => {
    const core = newCore('1', ['1', '2', '3'], { preVote: true, hardState: { term: 4 } });
    core.campaign();
    drain(core);
    core.step(msg('pre_vote_response', '2', '1', 5));
    assert.equal(core.status().role, 'candidate');
    assert.equal(core.status().term, 5);
    const rd = drain(core);
    assert.deepEqual(rd.hardState, { term: 5, vote: '1', commit: 0 });
    assert.deepEqual(
      rd.messagesAfterPersist.map((m) => [m.type, m.term]),
      [
        ['vote', 5],
        ['vote', 5],
      ],
    );
  });

  it('§9.6 a pre-candidate that is refused by a majority falls back to follower in the same term', () => {
    const core = newCore('1', ['1', '2', '3'], { preVote: true, hardState: { term: 4 } });
    core.campaign();
    core.step(msg('pre_vote_response', '2', '1', 4, { reject: true }));
    core.step(msg('pre_vote_response', '3', '1', 4, { reject: true }));
    assert.equal(core.status().role, 'follower');
    assert.equal(core.status().term, 4);
  });

  it('§9.6 a partitioned node keeps its term while cut off and rejoins without disrupting the leader', () => {
    const net = Network.create(['1', '2', '3'], { preVote: true });
    net.elect('1');
    const term = net.core('1').status().term;
    net.isolate('3');
    elapse(net, 10 * ELECTION);
    assert.equal(net.core('3').status().term, term, 'pre-vote kept the isolated node\u2019s term');
    net.heal();
    elapse(net, 3 * ELECTION);
    assert.equal(net.leader(), '1');
    assert.equal(net.core('1').status().term, term);
    assert.equal(net.core('3').status().leaderId, '1');
  });

  it('without pre-vote, the same partitioned node inflates its term and deposes the leader on rejoin (what §9.6 prevents)', () => {
    const net = Network.create(['1', '2', '3'], { preVote: false });
    net.elect('1');
    const term = net.core('1').status().term;
    net.isolate('3');
    elapse(net, 10 * ELECTION);
    assert.ok(net.core('3').status().term > term + 1);
    net.heal();
    elapse(net, 3 * ELECTION);
    assert.ok(net.core('1').status().term > term, 'the leader was forced into a new term');
  });
});

describe('§6.2 check-quorum', () => {
  it('§6.2 a leader that does not hear from a majority within an election timeout steps down', () => {
    const core = newCore('1', ['1', '2', '3'], { checkQuorum: true });
    becomeLeader(core);
    drain(core);
    // The first round still credits the peers (they were just added); the second one does not.
    tickN(core, ELECTION);
    assert.equal(core.status().role, 'leader');
    tickN(core, ELECTION);
    assert.equal(core.status().role, 'follower');
    assert.equal(core.status().leaderId, '');
    assert.equal(core.status().term, 1);
  });

  it('§6.2 a leader that hears from a majority every election timeout stays leader', () => {
    const core = newCore('1', ['1', '2', '3'], { checkQuorum: true });
    becomeLeader(core);
    drain(core);
    for (let round = 0; round < 10; round++) {
      tickN(core, ELECTION - 1);
      core.step(msg('heartbeat_response', '2', '1', 1));
      core.tick();
      drain(core);
    }
    assert.equal(core.status().role, 'leader');
  });

  it('§6.2 a partitioned minority leader steps down; the majority elects a new leader', () => {
    const net = Network.create(['1', '2', '3', '4', '5'], { checkQuorum: true, preVote: true });
    net.elect('1');
    net.partition(['1', '2'], ['3', '4', '5']);
    elapse(net, 4 * ELECTION);
    assert.notEqual(net.core('1').status().role, 'leader');
    assert.equal(net.core('1').status().term, 1, 'and, thanks to pre-vote, it stays in its term');
    const leader = net.leader();
    assert.ok(leader !== undefined && ['3', '4', '5'].includes(leader));
  });
});

describe('§4.2.3 leader stickiness', () => {
  it('§4.2.3 with check-quorum, a server that heard from the leader within the election timeout ignores a vote request with a higher term', () => {
    const core = newCore('1', ['1', '2', '3'], { checkQuorum: true, hardState: { term: 1 } });
    core.step(msg('heartbeat', '2', '1', 1));
    drain(core);
    core.step(msg('vote', '3', '1', 2, { logTerm: 0, index: 0 }));
    const rd = drain(core);
    assert.equal(core.status().term, 1, 'no term bump');
    assert.equal(core.status().leaderId, '2');
    assert.deepEqual([...rd.messages, ...rd.messagesAfterPersist], [], 'no answer at all');
  });

  it('§4.2.3 once an election timeout passed without the leader, the vote request is granted', () => {
    const core = newCore('1', ['1', '2', '3'], { checkQuorum: true, hardState: { term: 1 } });
    core.step(msg('heartbeat', '2', '1', 1));
    drain(core);
    tickN(core, ELECTION);
    // (It may have started campaigning itself; a vote request of a higher term still wins it over.)
    core.step(msg('vote', '3', '1', 5, { logTerm: 0, index: 0 }));
    assert.equal(core.status().term, 5);
    assert.equal(core.status().vote, '3');
  });

  it('§4.2.3 a leader ignores vote requests from a disruptive server while it leads (check-quorum)', () => {
    const net = Network.create(['1', '2', '3'], { checkQuorum: true });
    net.elect('1');
    net.core('3').campaign(); // no pre-vote: term 2
    net.stabilize();
    assert.equal(net.leader(), '1');
    assert.equal(net.core('1').status().term, 1);
  });
});
