// Leadership transfer (thesis §3.10).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Network } from './testing/network.js';
import { becomeLeader, drain, drainMessages, encoder, msg, newCore, tickN } from './testing/helpers.js';
import { isTransferContext } from './messages.js';

describe('§3.10 leadership transfer', () => {
  it('§3.10 the leader brings the target\u2019s log up to date, sends timeout_now, and the target wins the next term at once', () => {
    const net = Network.create(['1', '2', '3']);
    net.elect('1');
    net.cut('1', '3'); // 3 falls behind
    for (let i = 0; i < 5; i++) net.propose('1', `v${i}`);
    net.stabilize();
    net.heal();
    const term = net.core('1').status().term;
    assert.deepEqual(net.core('1').transferLeadership('3'), { kind: 'accepted' });
    let timeoutNowSentAt = -1;
    let step = 0;
    net.stabilize(undefined, (e) => {
      step++;
      if (e.kind === 'deliver' && e.deliveries.some((d) => d.message.type === 'timeout_now')) {
        timeoutNowSentAt = step;
        // By then 3 holds everything the leader had.
        assert.equal(net.core('3').status().lastIndex, net.core('1').status().lastIndex);
      }
    });
    assert.ok(timeoutNowSentAt > 0, 'timeout_now was sent');
    assert.equal(net.leader(), '3');
    assert.equal(net.core('3').status().term, term + 1);
    assert.deepEqual(net.applied('3'), ['v0', 'v1', 'v2', 'v3', 'v4']);
  });

  it('§3.10 the leader stops accepting client requests while a transfer is under way', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core);
    core.transferLeadership('2');
    const refused = core.propose(encoder.encode('x'));
    assert.equal(refused.kind, 'dropped');
    assert.equal(core.proposeMembershipChange({ kind: 'add_learner', node: '4' }).kind, 'dropped');
  });

  it('§3.10 the transfer is aborted if the target has not taken over within an election timeout', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core);
    core.transferLeadership('2');
    tickN(core, 9);
    assert.equal(core.propose(encoder.encode('x')).kind, 'dropped');
    core.tick();
    assert.equal(core.propose(encoder.encode('x')).kind, 'accepted');
    assert.equal(core.status().role, 'leader');
  });

  it('§3.10 a target that is already up to date gets timeout_now immediately', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core);
    core.step(msg('append_response', '2', '1', 1, { index: 1 }));
    drain(core);
    core.transferLeadership('2');
    assert.deepEqual(
      drainMessages(core, 'timeout_now').map((m) => m.to),
      ['2'],
    );
  });

  it('§3.10 timeout_now skips pre-vote, and voters set leader stickiness aside for it (vote context flag)', () => {
    const target = newCore('2', ['1', '2', '3'], { preVote: true, checkQuorum: true, hardState: { term: 1 } });
    target.step(msg('heartbeat', '1', '2', 1));
    drain(target);
    target.step(msg('timeout_now', '1', '2', 1));
    assert.equal(target.status().role, 'candidate');
    assert.equal(target.status().term, 2);
    const votes = drainMessages(target, 'vote');
    assert.ok(votes.length === 2 && votes.every((m) => isTransferContext(m.context)));

    const voter = newCore('3', ['1', '2', '3'], { preVote: true, checkQuorum: true, hardState: { term: 1 } });
    voter.step(msg('heartbeat', '1', '3', 1));
    drain(voter);
    const request = votes.find((m) => m.to === '3');
    assert.ok(request);
    voter.step(request);
    assert.equal(voter.status().vote, '2', 'granted although it just heard from the leader');
  });

  it('§3.10 with pre-vote and check-quorum the transfer completes in a full cluster', () => {
    const net = Network.create(['1', '2', '3'], { preVote: true, checkQuorum: true });
    net.elect('1');
    net.core('1').transferLeadership('2');
    net.stabilize();
    assert.equal(net.leader(), '2');
    assert.equal(net.core('1').status().role, 'follower');
  });

  it('§3.10 transferring to itself or to a non-voter is rejected; a follower answers not_leader', () => {
    const core = newCore('1', ['1', '2', '3'], { learners: ['4'] });
    assert.deepEqual(core.transferLeadership('2'), { kind: 'not_leader', leaderId: '' });
    becomeLeader(core);
    assert.equal(core.transferLeadership('1').kind, 'rejected');
    assert.equal(core.transferLeadership('4').kind, 'rejected');
    assert.equal(core.transferLeadership('9').kind, 'rejected');
  });
});
