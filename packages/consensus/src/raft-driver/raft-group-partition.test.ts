// Proposal outcomes across a partition, over the in-memory transport: a leader cut off from its
// followers keeps accepting proposals it can never commit; what their callers are told decides
// whether a retry is safe.
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@concord/runtime';
import { MemoryRaftNetwork } from './memory-transport.js';
import { RaftGroup, type RaftGroupOptions } from './raft-group.js';
import { seededRandom } from './random.js';
import { KvMachine, eventually } from './testing.js';

interface Member {
  id: string;
  group: RaftGroup<string>;
  machine: KvMachine;
}

const IDS = ['a', 'b', 'c'];

describe('RaftGroup proposals across a partition', () => {
  let root: string;
  let members: Member[] = [];
  let network: MemoryRaftNetwork;

  async function start(options: Partial<RaftGroupOptions<string>> = {}): Promise<void> {
    const logger = createLogger({ service: 'raft-test', level: 'silent' });
    const peers = Object.fromEntries(IDS.map((id) => [id, `memory:${id}`]));
    members = IDS.map((id, n) => {
      const machine = new KvMachine();
      const group = new RaftGroup<string>({
        groupId: 'g1',
        memberId: id,
        address: `memory:${id}`,
        peers,
        dataDir: join(root, id),
        stateMachine: machine,
        transport: network.transport('g1', id),
        tickMs: 20,
        random: seededRandom(1000 + n),
        logger,
        sync: false,
        ...options,
      });
      return { id, group, machine };
    });
    await Promise.all(members.map((m) => m.group.start()));
  }

  function leaderAmong(candidates: Member[]): Member | undefined {
    const leaders = candidates.filter((m) => m.group.status().role === 'leader');
    const leader = leaders.length === 1 ? leaders[0] : undefined;
    return leader !== undefined && candidates.every((m) => m.group.status().leaderId === leader.id) ? leader : undefined;
  }

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'concord-raft-partition-'));
    network = new MemoryRaftNetwork();
  });

  afterEach(async () => {
    for (const member of members) await member.group.stop();
    members = [];
    await rm(root, { recursive: true, force: true });
  });

  it('a proposal on a cut-off leader whose index a new leader fills resolves dropped', async () => {
    await start();
    const old = await eventually('a leader', () => leaderAmong(members));
    assert.equal((await old.group.propose(Buffer.from('x=1'))).kind, 'applied');

    network.isolate(old.id);
    const lost = old.group.propose(Buffer.from('lost=1'));
    const others = members.filter((m) => m !== old);
    const next = await eventually('a leader of the majority', () => leaderAmong(others));
    assert.equal((await next.group.propose(Buffer.from('kept=1'))).kind, 'applied');

    network.heal(old.id);
    const outcome = await lost;
    assert.equal(outcome.kind, 'dropped', JSON.stringify(outcome));
    await eventually('the old leader to catch up', () => old.machine.values.get('kept') === '1');
    for (const member of members) assert.ok(!member.machine.history.includes('lost=1'), `${member.id} applied a dropped proposal`);
  });

  it('a proposal that stays in limbo resolves unknown after proposalTimeoutMs', async () => {
    await start({ proposalTimeoutMs: 300 });
    const leader = await eventually('a leader', () => leaderAmong(members));
    network.isolate(leader.id);
    const outcome = await leader.group.propose(Buffer.from('limbo=1'));
    assert.equal(outcome.kind, 'unknown');
  });

  it('answers read barriers on a leader cut off from its followers not_leader once readTimeoutMs has passed, each from its own arrival', async () => {
    // Without check-quorum the cut-off leader keeps its role, so only the timeout can answer.
    await start({ readTimeoutMs: 300, checkQuorum: false });
    const leader = await eventually('a leader', () => leaderAmong(members));
    network.isolate(leader.id);
    const timed = async (): Promise<{ kind: string; waitedMs: number }> => {
      const from = performance.now();
      const outcome = await leader.group.readBarrier();
      return { kind: outcome.kind, waitedMs: performance.now() - from };
    };
    const first = timed();
    await new Promise((resolve) => setTimeout(resolve, 150));
    const second = timed();
    const outcomes = await Promise.all([first, second]);
    for (const outcome of outcomes) {
      assert.equal(outcome.kind, 'not_leader');
      // A timer may run late but never early: neither caller is answered before its own 300 ms.
      assert.ok(outcome.waitedMs >= 295, `answered after ${outcome.waitedMs.toFixed(0)} ms`);
    }
    network.heal(leader.id);
    await eventually('a read barrier to pass once healed', async () => (await leader.group.readBarrier()).kind === 'ready');
  });

  it('resolves proposals still waiting when the group stops as unknown, and refuses new ones', async () => {
    await start();
    const leader = await eventually('a leader', () => leaderAmong(members));
    network.isolate(leader.id);
    const pending = leader.group.propose(Buffer.from('pending=1'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await leader.group.stop();
    assert.equal((await pending).kind, 'unknown');
    assert.equal((await leader.group.propose(Buffer.from('late=1'))).kind, 'dropped');
  });
});
