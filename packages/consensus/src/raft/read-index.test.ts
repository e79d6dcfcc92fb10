// Linearizable reads without log writes (thesis §6.4) and the leader lease (thesis §6.4.1).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Network } from './testing/network.js';
import { becomeLeader, drain, drainMessages, encoder, msg, newCore, tickN } from './testing/helpers.js';
import type { RaftCore } from './core.js';

const ctx = (s: string): Uint8Array => encoder.encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A leader of a 3-node cluster whose no-op is committed (acknowledged by 2). */
function establishedLeader(options: Parameters<typeof newCore>[2] = {}): RaftCore {
  const core = newCore('1', ['1', '2', '3'], options);
  becomeLeader(core);
  drain(core);
  core.step(msg('append_response', '2', '1', 1, { index: 1 }));
  drain(core);
  assert.equal(core.status().commit, 1);
  return core;
}

function readStatesOf(core: RaftCore): string[] {
  return drain(core).readStates.map((r) => `${r.index}:${text(r.context)}`);
}

describe('§6.4 ReadIndex', () => {
  it('§6.4 the leader records its commit index, confirms leadership with a heartbeat round to a majority, then emits a ReadState', () => {
    const core = establishedLeader();
    assert.deepEqual(core.readIndex(ctx('r1')), { kind: 'accepted' });
    const rd = drain(core);
    assert.deepEqual(rd.readStates, []);
    const heartbeats = rd.messages.filter((m) => m.type === 'heartbeat');
    assert.deepEqual(
      heartbeats.map((m) => [m.to, text(m.context ?? new Uint8Array())]),
      [
        ['2', 'r1'],
        ['3', 'r1'],
      ],
    );
    // A write arriving meanwhile does not change the read's index.
    core.propose(ctx('w'));
    drain(core);
    core.step(msg('heartbeat_response', '3', '1', 1, { context: ctx('r1') }));
    assert.deepEqual(readStatesOf(core), ['1:r1']);
  });

  it('§6.4 a new leader serves no read until an entry of its own term is committed', () => {
    const core = newCore('1', ['1', '2', '3']);
    becomeLeader(core);
    drain(core);
    core.readIndex(ctx('early'));
    assert.deepEqual(drainMessages(core, 'heartbeat'), [], 'no round yet: the commit index may be stale');
    core.step(msg('heartbeat_response', '2', '1', 1, { context: ctx('early') }));
    assert.deepEqual(readStatesOf(core), []);
    core.step(msg('append_response', '2', '1', 1, { index: 1 })); // the no-op commits
    const round = drainMessages(core, 'heartbeat').filter((m) => m.context !== undefined);
    assert.equal(round.length, 2);
    core.step(msg('heartbeat_response', '2', '1', 1, { context: ctx('early') }));
    assert.deepEqual(readStatesOf(core), ['1:early']);
  });

  it('§6.4 an acknowledgement from a majority for a later read also releases the earlier pending reads', () => {
    const core = establishedLeader();
    core.readIndex(ctx('a'));
    core.readIndex(ctx('b'));
    drain(core);
    core.step(msg('heartbeat_response', '2', '1', 1, { context: ctx('b') }));
    assert.deepEqual(readStatesOf(core), ['1:a', '1:b']);
  });

  it('§6.4 a single-voter leader answers at once', () => {
    const core = newCore('1', ['1']);
    core.campaign();
    drain(core);
    drain(core);
    core.readIndex(ctx('solo'));
    assert.deepEqual(readStatesOf(core), ['1:solo']);
  });

  it('§6.4 a follower forwards the request to the leader and emits the ReadState from its answer', () => {
    const net = Network.create(['1', '2', '3']);
    net.elect('1');
    net.propose('1', 'w1');
    net.stabilize();
    const writeIndex = net.core('1').status().commit;
    assert.deepEqual(net.core('2').readIndex(ctx('f')), { kind: 'accepted' });
    net.stabilize();
    const states = net.node('2').readStates;
    assert.equal(states.length, 1);
    assert.equal(text(states[0]?.context ?? new Uint8Array()), 'f');
    assert.ok((states[0]?.index ?? 0) >= writeIndex, 'the read sees every write acknowledged before it');
  });

  it('§6.4 a node that knows no leader answers not_leader', () => {
    const core = newCore('1', ['1', '2', '3']);
    assert.deepEqual(core.readIndex(ctx('x')), { kind: 'not_leader', leaderId: '' });
  });

  it('§6.4 a leader cut off from the majority never confirms a read', () => {
    const net = Network.create(['1', '2', '3']);
    net.elect('1');
    net.isolate('1');
    net.core('1').readIndex(ctx('stale?'));
    for (let i = 0; i < 30; i++) {
      net.tick('1');
      net.stabilize();
    }
    assert.deepEqual(net.node('1').readStates, []);
  });
});

describe('§6.4.1 leader lease (readOnlyMode lease_based)', () => {
  const lease = { readOnlyMode: 'lease_based' as const, checkQuorum: true, leaseSafetyMarginTicks: 2 };

  it('§6.4.1 lease_based requires check-quorum', () => {
    assert.throws(() => newCore('1', ['1', '2', '3'], { readOnlyMode: 'lease_based', checkQuorum: false }), /requires checkQuorum/);
  });

  it('§6.4.1 while the lease holds the leader answers without a heartbeat round; once it lapses, it runs one', () => {
    const core = establishedLeader(lease);
    core.tick(); // clock 1: heartbeats carry it
    const beats = drainMessages(core, 'heartbeat');
    assert.ok(beats.length > 0);
    core.step(msg('heartbeat_response', '2', '1', 1, { index: beats[0]?.index ?? 0 }));
    core.readIndex(ctx('fast'));
    const rd = drain(core);
    assert.deepEqual(
      rd.readStates.map((r) => text(r.context)),
      ['fast'],
    );
    assert.deepEqual(
      rd.messages.filter((m) => m.context !== undefined),
      [],
    );
    // electionTicks − margin = 8 ticks after the acknowledged heartbeat was sent, the lease is over.
    tickN(core, 8);
    drain(core);
    core.readIndex(ctx('slow'));
    const after = drain(core);
    assert.deepEqual(after.readStates, []);
    assert.ok(after.messages.some((m) => m.type === 'heartbeat' && m.context !== undefined));
  });

  it('§6.4.1 a leadership transfer voids the lease for the rest of the term (timeout_now overrides stickiness)', () => {
    const core = establishedLeader(lease);
    core.tick();
    const beats = drainMessages(core, 'heartbeat');
    core.step(msg('heartbeat_response', '2', '1', 1, { index: beats[0]?.index ?? 0 }));
    core.transferLeadership('3');
    drain(core);
    core.readIndex(ctx('r'));
    assert.deepEqual(drain(core).readStates, []);
  });

  it('§6.4.1 a restarted node does not help elect a new leader for an election timeout (it may be inside a lease it forgot)', () => {
    const core = newCore('2', ['1', '2', '3'], { ...lease, hardState: { term: 1 } });
    core.step(msg('vote', '3', '2', 2, { logTerm: 0, index: 0 }));
    assert.equal(core.status().term, 1, 'ignored right after start');
    tickN(core, 10);
    core.step(msg('vote', '3', '2', 5, { logTerm: 0, index: 0 }));
    assert.equal(core.status().vote, '3');
  });

  it('§6.4.1 lease reads in a running cluster match the safe mode answers', () => {
    const net = Network.create(['1', '2', '3'], lease);
    // Fresh nodes sit out one election timeout before voting, so let time run until a leader emerges.
    for (let i = 0; i < 100 && net.leader() === undefined; i++) {
      for (const id of net.ids()) net.tick(id);
      net.stabilize();
    }
    const leader = net.leader();
    assert.ok(leader !== undefined);
    for (let i = 0; i < 3; i++) {
      for (const id of net.ids()) net.tick(id);
      net.stabilize();
    }
    net.propose(leader, 'w');
    net.stabilize();
    net.core(leader).readIndex(ctx('l'));
    const rd = net.processReady(leader);
    assert.deepEqual(
      rd?.readStates.map((r) => r.index),
      [net.core(leader).status().commit],
    );
  });
});
