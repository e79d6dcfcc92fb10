// Membership changes one server at a time (thesis §4.1–4.4). The configuration takes effect when
// its entry is appended (see membership.ts for why).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Network } from './testing/network.js';
import { becomeLeader, drain, drainMessages, encoder, entriesWithTerms, msg, newCore, tickN } from './testing/helpers.js';
import { decodeConfChange, encodeConfChange } from './membership.js';
import type { Entry } from './types.js';

function confEntry(term: number, index: number, kind: 'add_learner' | 'promote' | 'remove', node: string, voters: string[], learners: string[]): Entry {
  return { term, index, type: 'conf_change', data: encodeConfChange({ change: { kind, node }, membership: { voters, learners } }) };
}

/** Ticks every node once and lets the network settle, until `done` or `rounds` run out. */
function elapseUntil(net: Network, rounds: number, done: () => boolean): void {
  for (let i = 0; i < rounds && !done(); i++) {
    for (const id of net.ids()) net.tick(id);
    net.stabilize();
  }
}

describe('§4 membership changes', () => {
  it('a conf_change entry carries the change and the resulting membership as UTF-8 JSON', () => {
    const data = encodeConfChange({ change: { kind: 'add_learner', node: '4' }, membership: { voters: ['1', '2', '3'], learners: ['4'] } });
    assert.equal(
      new TextDecoder().decode(data),
      '{"change":{"kind":"add_learner","node":"4"},"membership":{"voters":["1","2","3"],"learners":["4"]}}',
    );
    assert.deepEqual(decodeConfChange(data).membership, { voters: ['1', '2', '3'], learners: ['4'] });
    assert.throws(() => decodeConfChange(encoder.encode('{"change":{"kind":"demote","node":"4"}}')), /malformed/);
  });

  it('§4.2.1 a learner receives the log but its acknowledgements do not count toward commitment', () => {
    const net = Network.create(['1', '2', '3']);
    net.addNode('4', { voters: ['1', '2', '3'], learners: [] });
    net.elect('1');
    assert.equal(net.core('1').proposeMembershipChange({ kind: 'add_learner', node: '4' }).kind, 'accepted');
    net.stabilize();
    net.partition(['1', '4'], ['2', '3']);
    const commit = net.core('1').status().commit;
    net.propose('1', 'x');
    net.stabilize();
    assert.equal(net.core('4').status().lastIndex, commit + 1, 'the learner has the entry');
    assert.equal(net.core('1').status().commit, commit, 'leader + learner is no majority of three voters');
  });

  it('§4.2.1 a learner never campaigns, and its votes are not counted', () => {
    const learner = newCore('4', ['1', '2', '3'], { learners: ['4'] });
    tickN(learner, 100);
    assert.equal(learner.status().role, 'follower');
    assert.deepEqual(drainMessages(learner), []);

    const candidate = newCore('1', ['1', '2', '3'], { learners: ['4'] });
    candidate.campaign();
    drain(candidate);
    assert.deepEqual(
      drainMessages(candidate).map((m) => m.to),
      [],
    );
    candidate.step(msg('vote_response', '4', '1', 1));
    assert.equal(candidate.status().role, 'candidate');
  });

  it('§4.1 a leader proposes a membership change only after the no-op of its term is committed', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core);
    const early = core.proposeMembershipChange({ kind: 'add_learner', node: '4' });
    assert.equal(early.kind, 'dropped');
    core.step(msg('append_response', '2', '1', 1, { index: 1 }));
    assert.equal(core.proposeMembershipChange({ kind: 'add_learner', node: '4' }).kind, 'accepted');
  });

  it('§4.1 at most one membership change is uncommitted at any time', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core);
    core.step(msg('append_response', '2', '1', 1, { index: 1 }));
    drain(core);
    assert.equal(core.proposeMembershipChange({ kind: 'add_learner', node: '4' }).kind, 'accepted');
    const second = core.proposeMembershipChange({ kind: 'add_learner', node: '5' });
    assert.equal(second.kind, 'dropped');
    assert.match(second.kind === 'dropped' ? second.reason : '', /not committed yet/);
    drain(core);
    core.step(msg('append_response', '2', '1', 1, { index: 2 }));
    assert.equal(core.status().commit, 2);
    assert.equal(core.proposeMembershipChange({ kind: 'add_learner', node: '5' }).kind, 'accepted');
  });

  it('§4.1 invalid changes are refused with a reason (promote a non-learner, remove a stranger, remove the last voter)', () => {
    const core = newCore('1', ['1']);
    core.campaign();
    drain(core);
    drain(core);
    for (const change of [
      { kind: 'promote', node: '2' },
      { kind: 'remove', node: '7' },
      { kind: 'remove', node: '1' },
      { kind: 'add_learner', node: '1' },
    ] as const) {
      const result = core.proposeMembershipChange(change);
      assert.equal(result.kind, 'dropped', `${change.kind} ${change.node}`);
    }
  });

  it('§4.1 a configuration takes effect when appended; a follower that truncates the entry reverts to the previous one', () => {
    const core = newCore('2', ['1', '2', '3'], { log: entriesWithTerms([1]), hardState: { term: 1, commit: 1 }, applied: 1 });
    core.step(msg('append', '1', '2', 1, { index: 1, logTerm: 1, commit: 1, entries: [confEntry(1, 2, 'add_learner', '4', ['1', '2', '3'], ['4'])] }));
    assert.deepEqual(core.membership(), { voters: ['1', '2', '3'], learners: ['4'] }, 'in effect before it commits');
    // A new leader never had that entry: it overwrites index 2.
    core.step(msg('append', '3', '2', 2, { index: 1, logTerm: 1, commit: 1, entries: entriesWithTerms([2], 2) }));
    assert.deepEqual(core.membership(), { voters: ['1', '2', '3'], learners: [] });
  });

  it('§4.1 the leader replicates to a new member as soon as the change is appended', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core);
    core.step(msg('append_response', '2', '1', 1, { index: 1 }));
    drain(core);
    core.proposeMembershipChange({ kind: 'add_learner', node: '4' });
    assert.deepEqual(core.membership(), { voters: ['1', '2', '3'], learners: ['4'] });
    assert.ok(core.status().progress?.['4']);
    assert.ok(drainMessages(core, 'append').some((m) => m.to === '4'));
  });

  it('§4.2.1 promote is refused until the learner has caught up; then the learner becomes a voter and the quorum grows', () => {
    const net = Network.create(['1', '2', '3']);
    net.addNode('4', { voters: [], learners: [] });
    net.elect('1');
    net.isolate('4');
    net.core('1').proposeMembershipChange({ kind: 'add_learner', node: '4' });
    net.propose('1', 'a');
    net.stabilize();
    const refused = net.core('1').proposeMembershipChange({ kind: 'promote', node: '4' });
    assert.equal(refused.kind, 'dropped');
    assert.match(refused.kind === 'dropped' ? refused.reason : '', /has not caught up/);
    net.heal();
    net.tick('1');
    net.stabilize();
    assert.equal(net.core('1').proposeMembershipChange({ kind: 'promote', node: '4' }).kind, 'accepted');
    net.stabilize();
    assert.deepEqual(net.core('4').membership(), { voters: ['1', '2', '3', '4'], learners: [] });
    // Four voters: three are needed now.
    net.partition(['1', '2'], ['3', '4']);
    const commit = net.core('1').status().commit;
    net.propose('1', 'b');
    net.stabilize();
    assert.equal(net.core('1').status().commit, commit);
  });

  it('§4.2.2 a leader that removes itself leads until the removal commits, without counting itself, then steps down', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core);
    core.step(msg('append_response', '2', '1', 1, { index: 1 }));
    drain(core);
    assert.equal(core.proposeMembershipChange({ kind: 'remove', node: '1' }).kind, 'accepted');
    assert.equal(core.propose(encoder.encode('x')).kind, 'dropped', 'no new work for a leader on its way out');
    drain(core);
    core.step(msg('append_response', '2', '1', 1, { index: 2 }));
    assert.equal(core.status().commit, 1, 'the new configuration {2, 3} needs both');
    assert.equal(core.status().role, 'leader');
    core.step(msg('append_response', '3', '1', 1, { index: 2 }));
    assert.equal(core.status().commit, 2);
    assert.equal(core.status().role, 'follower');
    // The commit index still reaches the others.
    const rd = drain(core);
    assert.ok(rd.messages.some((m) => m.type === 'append' && m.commit === 2));
  });

  it('§4.2.3 a server that knows it was removed does not campaign', () => {
    const log = [...entriesWithTerms([1]), confEntry(1, 2, 'remove', '3', ['1', '2'], [])];
    const core = newCore('3', ['1', '2', '3'], { log, hardState: { term: 1, commit: 2 }, applied: 2 });
    tickN(core, 100);
    assert.equal(core.status().role, 'follower');
    assert.deepEqual(drainMessages(core), []);
  });

  it('§4.2.3 a removed server that never learns of its removal cannot disrupt the cluster (pre-vote and stickiness)', () => {
    const net = Network.create(['1', '2', '3'], { preVote: true, checkQuorum: true });
    net.elect('1');
    net.core('1').proposeMembershipChange({ kind: 'remove', node: '3' });
    net.stabilize();
    // The leader stops replicating to 3 as soon as the removal is appended: 3 never hears of it.
    assert.deepEqual(net.core('3').membership(), { voters: ['1', '2', '3'], learners: [] });
    const term = net.core('1').status().term;
    elapseUntil(net, 100, () => false);
    assert.equal(net.leader(), '1');
    assert.equal(net.core('1').status().term, term);
    assert.equal(net.core('2').status().term, term);
  });

  it('§4 replacing every member one server at a time keeps every committed entry', () => {
    const net = Network.create(['1', '2', '3'], { preVote: true, checkQuorum: true });
    net.elect('1');
    let counter = 0;
    const leader = (): string => {
      elapseUntil(net, 200, () => net.leader() !== undefined && net.core(net.leader() ?? '').status().commit > 0);
      const id = net.leader();
      assert.ok(id !== undefined, 'a leader');
      return id;
    };
    const change = (kind: 'add_learner' | 'promote' | 'remove', node: string): void => {
      for (let attempt = 0; attempt < 50; attempt++) {
        const id = leader();
        net.propose(id, `w${counter++}`);
        const result = net.core(id).proposeMembershipChange({ kind, node });
        net.stabilize();
        if (result.kind === 'accepted') return;
        elapseUntil(net, 1, () => false);
      }
      assert.fail(`${kind} ${node} never accepted`);
    };
    for (const [added, removed] of [
      ['4', '1'],
      ['5', '2'],
      ['6', '3'],
    ] as const) {
      net.addNode(added, { voters: [], learners: [] });
      change('add_learner', added);
      change('promote', added);
      change('remove', removed);
    }
    const id = leader();
    assert.ok(['4', '5', '6'].includes(id));
    net.propose(id, 'final');
    net.stabilize();
    const expected = Array.from({ length: counter }, (_, i) => `w${i}`).concat('final');
    for (const node of ['4', '5', '6']) {
      assert.deepEqual(net.core(node).membership(), { voters: ['4', '5', '6'], learners: [] });
      assert.deepEqual(net.applied(node), expected, `node ${node}`);
    }
  });
});
