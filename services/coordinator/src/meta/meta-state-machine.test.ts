import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HashRing } from '@concord/ring';
import { decodeMetaCommand, encodeMetaCommand, type BootstrapCommand, type MetaCommand, type MetaResult } from './commands.js';
import { MetaStateMachine } from './meta-state-machine.js';

const BOOTSTRAP: BootstrapCommand = {
  type: 'bootstrap',
  ringEpoch: 1,
  vnodes: 128,
  groups: [
    { groupId: 'g2', addresses: ['10.0.0.2:7101', '10.0.0.5:7101'] },
    { groupId: 'g1', addresses: ['10.0.0.1:7101'] },
  ],
};

/** Applies commands through their log encoding, at consecutive indexes from `first`. */
function applyAll(machine: MetaStateMachine, commands: readonly MetaCommand[], first = 1): MetaResult[] {
  return commands.map((command, i) => machine.apply(encodeMetaCommand(command), first + i));
}

function bootstrapped(): MetaStateMachine {
  const machine = new MetaStateMachine();
  assert.deepEqual(applyAll(machine, [BOOTSTRAP]), [{ kind: 'applied', ringEpoch: 1 }]);
  return machine;
}

function groupsOf(machine: MetaStateMachine): [string, readonly string[]][] {
  return (machine.directory?.groups ?? []).map((group) => [group.groupId, group.addresses]);
}

describe('meta commands', () => {
  it('round-trip through their JSON log encoding, equal commands to equal bytes', () => {
    const commands: MetaCommand[] = [
      BOOTSTRAP,
      { type: 'set_group_addresses', groupId: 'g1', addresses: ['h:1', 'h:2'] },
      { type: 'add_group', groupId: 'g3', addresses: ['h:3'] },
      { type: 'remove_group', groupId: 'g3' },
    ];
    for (const [i, command] of commands.entries()) {
      const bytes = encodeMetaCommand(command);
      assert.deepEqual(decodeMetaCommand(bytes, i + 1), command);
      const reordered = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
      const shuffled = Object.fromEntries(Object.entries(reordered).reverse()) as unknown as MetaCommand;
      assert.deepEqual(encodeMetaCommand(shuffled), bytes);
    }
  });

  it('refuse, naming the index, what this version never writes: applying it as a no-op could make replicas diverge', () => {
    const machine = new MetaStateMachine();
    assert.throws(() => machine.apply(Buffer.from('not json'), 7), /^Error: meta command at log index 7: not JSON/);
    assert.throws(() => machine.apply(Buffer.from('{"type":"drop_everything"}'), 8), /index 8: unknown type "drop_everything"/);
    assert.throws(() => machine.apply(Buffer.from('{"type":"remove_group","groupId":3}'), 9), /index 9: groupId is not a string/);
    assert.throws(() => machine.apply(Buffer.from('{"type":"bootstrap","ringEpoch":1.5,"vnodes":1,"groups":[]}'), 10), /ringEpoch is not an integer/);
    assert.equal(machine.directory, undefined);
  });
});

describe('MetaStateMachine', () => {
  it('bootstrap: builds the ring and directory once, in ring order of group id', () => {
    const machine = bootstrapped();
    const directory = machine.directory;
    assert.ok(directory);
    assert.equal(directory.ring.epoch, 1);
    assert.equal(directory.ring.vnodesPerGroup, 128);
    assert.deepEqual(directory.ring.groups, ['g1', 'g2']);
    assert.deepEqual(groupsOf(machine), [
      ['g1', ['10.0.0.1:7101']],
      ['g2', ['10.0.0.2:7101', '10.0.0.5:7101']],
    ]);
    assert.equal(directory.changedAt, 1);
    // The ring is the documented function of its config: the same owner for every key.
    const reference = new HashRing({ epoch: 1, vnodesPerGroup: 128, groups: ['g1', 'g2'] });
    for (const key of ['a', 'b', 'user/42', '']) assert.equal(directory.ring.ownerOf(key), reference.ownerOf(key));
  });

  it('bootstrap is idempotent: the same one again changes nothing, a different one is rejected saying why', () => {
    const machine = bootstrapped();
    const before = machine.directory;
    const reordered: BootstrapCommand = { ...BOOTSTRAP, groups: [...BOOTSTRAP.groups].reverse() };
    const [again] = applyAll(machine, [reordered], 2);
    assert.deepEqual(again, { kind: 'unchanged', ringEpoch: 1, reason: 'the meta group already holds this ring' });
    assert.equal(machine.directory, before, 'not even rebuilt');

    const differing: BootstrapCommand[] = [
      { ...BOOTSTRAP, ringEpoch: 2 },
      { ...BOOTSTRAP, vnodes: 64 },
      { ...BOOTSTRAP, groups: [...BOOTSTRAP.groups, { groupId: 'g3', addresses: ['10.0.0.3:7101'] }] },
      { ...BOOTSTRAP, groups: [{ groupId: 'g1', addresses: ['10.0.0.9:7101'] }, BOOTSTRAP.groups[0]!] },
    ];
    for (const [i, command] of differing.entries()) {
      const [result] = applyAll(machine, [command], 3 + i);
      assert.equal(result?.kind, 'rejected');
      assert.match(
        result?.kind === 'rejected' ? result.reason : '',
        /^the meta group already holds a ring \(epoch 1, 128 vnodes, g1=10\.0\.0\.1:7101, g2=10\.0\.0\.2:7101\|10\.0\.0\.5:7101\); a bootstrap with .* changes nothing$/,
      );
      assert.equal(machine.directory, before);
    }
  });

  it('bootstrap rejects an invalid seed and stays empty', () => {
    const machine = new MetaStateMachine();
    const cases: [BootstrapCommand, RegExp][] = [
      [{ ...BOOTSTRAP, ringEpoch: 0 }, /^bootstrap: ring epoch must be an integer of at least 1 \(got 0\)/],
      [{ ...BOOTSTRAP, vnodes: 5000 }, /^bootstrap: virtual nodes per group must be an integer from 1 to 4096/],
      [{ ...BOOTSTRAP, groups: [] }, /^bootstrap: must name at least one shard group/],
      [{ ...BOOTSTRAP, groups: [{ groupId: 'g 1', addresses: ['h:1'] }] }, /^bootstrap: group id must be/],
      [{ ...BOOTSTRAP, groups: [{ groupId: 'g1', addresses: ['h:1'] }, { groupId: 'g1', addresses: ['h:2'] }] }, /group g1 is listed twice/],
      [{ ...BOOTSTRAP, groups: [{ groupId: 'g1', addresses: ['h:1'] }, { groupId: 'g2', addresses: ['h:1'] }] }, /h:1 is already a replica of group g1/],
      [{ ...BOOTSTRAP, groups: [{ groupId: 'g1', addresses: [] }] }, /group g1: must list at least one replica address/],
      [{ ...BOOTSTRAP, groups: [{ groupId: 'g1', addresses: ['nowhere'] }] }, /group g1: replica address must be host:port/],
    ];
    for (const [i, [command, reason]] of cases.entries()) {
      const [result] = applyAll(machine, [command], i + 1);
      assert.equal(result?.kind, 'rejected');
      assert.match(result?.kind === 'rejected' ? result.reason : '', reason);
    }
    assert.equal(machine.directory, undefined);
    assert.deepEqual(applyAll(machine, [BOOTSTRAP], 100), [{ kind: 'applied', ringEpoch: 1 }]);
  });

  it('set_group_addresses replaces one group\'s replicas and keeps the ring and its epoch', () => {
    const machine = bootstrapped();
    const ring = machine.directory?.ring;
    const [result] = applyAll(machine, [{ type: 'set_group_addresses', groupId: 'g2', addresses: ['10.0.0.2:7101', '10.0.0.7:7101'] }], 2);
    assert.deepEqual(result, { kind: 'applied', ringEpoch: 1 });
    assert.equal(machine.directory?.ring, ring, 'same epoch, same ring object');
    assert.equal(machine.directory?.changedAt, 2);
    assert.deepEqual(groupsOf(machine), [
      ['g1', ['10.0.0.1:7101']],
      ['g2', ['10.0.0.2:7101', '10.0.0.7:7101']],
    ]);
  });

  it('set_group_addresses rejects unknown groups, bad or shared addresses, and an empty meta group', () => {
    const empty = new MetaStateMachine();
    const [early] = applyAll(empty, [{ type: 'set_group_addresses', groupId: 'g1', addresses: ['h:1'] }]);
    assert.match(early?.kind === 'rejected' ? early.reason : '', /^the meta group holds no ring yet/);

    const machine = bootstrapped();
    const before = machine.directory;
    const cases: [MetaCommand, RegExp][] = [
      [{ type: 'set_group_addresses', groupId: 'g9', addresses: ['h:1'] }, /^no shard group "g9" on the ring \(epoch 1\)/],
      [{ type: 'set_group_addresses', groupId: 'g1', addresses: [] }, /^group g1: must list at least one replica address/],
      [{ type: 'set_group_addresses', groupId: 'g1', addresses: ['h:1', 'h:1'] }, /^group g1 lists h:1 twice/],
      [{ type: 'set_group_addresses', groupId: 'g1', addresses: ['10.0.0.5:7101'] }, /^10\.0\.0\.5:7101 is already a replica of group g2/],
      [{ type: 'set_group_addresses', groupId: 'g1', addresses: ['h:99999'] }, /^group g1: replica port must be from 1 to 65535/],
    ];
    for (const [i, [command, reason]] of cases.entries()) {
      const [result] = applyAll(machine, [command], 2 + i);
      assert.equal(result?.kind, 'rejected');
      assert.match(result?.kind === 'rejected' ? result.reason : '', reason);
    }
    assert.equal(machine.directory, before);
    // Its own addresses may be listed again (reordered, one added).
    assert.equal(applyAll(machine, [{ type: 'set_group_addresses', groupId: 'g2', addresses: ['10.0.0.5:7101', '10.0.0.2:7101'] }], 20)[0]?.kind, 'applied');
  });

  it('add_group and remove_group move the ring to the next epoch, as HashRing.withGroup/withoutGroup', () => {
    const machine = bootstrapped();
    const original = machine.directory?.ring;
    assert.ok(original);
    const [added] = applyAll(machine, [{ type: 'add_group', groupId: 'g0', addresses: ['10.0.0.0:7101'] }], 2);
    assert.deepEqual(added, { kind: 'applied', ringEpoch: 2 });
    const grown = machine.directory?.ring;
    assert.ok(grown);
    assert.equal(grown.epoch, 2);
    assert.deepEqual(grown.groups, ['g0', 'g1', 'g2']);
    assert.deepEqual(groupsOf(machine).map(([groupId]) => groupId), ['g0', 'g1', 'g2']);
    const expected = original.withGroup('g0');
    for (let i = 0; i < 200; i++) assert.equal(grown.ownerOf(`k${i}`), expected.ownerOf(`k${i}`));
    assert.equal(machine.directory?.changedAt, 2);

    const [removed] = applyAll(machine, [{ type: 'remove_group', groupId: 'g1' }], 3);
    assert.deepEqual(removed, { kind: 'applied', ringEpoch: 3 });
    const shrunk = machine.directory?.ring;
    assert.ok(shrunk);
    assert.deepEqual(shrunk.groups, ['g0', 'g2']);
    const expectedShrunk = expected.withoutGroup('g1');
    for (let i = 0; i < 200; i++) assert.equal(shrunk.ownerOf(`k${i}`), expectedShrunk.ownerOf(`k${i}`));
    assert.deepEqual(groupsOf(machine), [
      ['g0', ['10.0.0.0:7101']],
      ['g2', ['10.0.0.2:7101', '10.0.0.5:7101']],
    ]);
  });

  it('add_group and remove_group reject what would break the directory, leaving the epoch alone', () => {
    const machine = bootstrapped();
    const cases: [MetaCommand, RegExp][] = [
      [{ type: 'add_group', groupId: 'g1', addresses: ['h:1'] }, /^group g1 is already on the ring \(epoch 1\)/],
      [{ type: 'add_group', groupId: 'g/3', addresses: ['h:1'] }, /^group id must be/],
      [{ type: 'add_group', groupId: 'g3', addresses: ['10.0.0.1:7101'] }, /^10\.0\.0\.1:7101 is already a replica of group g1/],
      [{ type: 'add_group', groupId: 'g3', addresses: [] }, /^group g3: must list at least one replica address/],
      [{ type: 'remove_group', groupId: 'g3' }, /^no shard group "g3" on the ring/],
    ];
    for (const [i, [command, reason]] of cases.entries()) {
      const [result] = applyAll(machine, [command], 2 + i);
      assert.equal(result?.kind, 'rejected');
      assert.match(result?.kind === 'rejected' ? result.reason : '', reason);
    }
    assert.equal(machine.directory?.ring.epoch, 1);
    applyAll(machine, [{ type: 'remove_group', groupId: 'g1' }], 10);
    const [last] = applyAll(machine, [{ type: 'remove_group', groupId: 'g2' }], 11);
    assert.match(last?.kind === 'rejected' ? last.reason : '', /^group g2 is the last group on the ring; its keys would have no owner/);
    assert.equal(machine.directory?.ring.epoch, 2);

    const empty = new MetaStateMachine();
    for (const command of [{ type: 'add_group', groupId: 'g1', addresses: ['h:1'] }, { type: 'remove_group', groupId: 'g1' }] as MetaCommand[]) {
      assert.equal(applyAll(empty, [command])[0]?.kind, 'rejected');
    }
  });

  it('snapshot and restore round-trip the state, and replicas stay identical afterwards', () => {
    const empty = new MetaStateMachine();
    const restoredEmpty = bootstrapped();
    restoredEmpty.restore(empty.snapshot());
    assert.equal(restoredEmpty.directory, undefined);

    const history: MetaCommand[] = [
      BOOTSTRAP,
      { type: 'add_group', groupId: 'g3', addresses: ['10.0.0.3:7101'] },
      { type: 'set_group_addresses', groupId: 'g1', addresses: ['10.0.0.11:7101', '10.0.0.1:7101'] },
      { type: 'remove_group', groupId: 'g2' },
    ];
    const original = new MetaStateMachine();
    applyAll(original, history);
    const snapshot = original.snapshot();
    const restored = new MetaStateMachine();
    restored.restore(snapshot);
    assert.deepEqual(restored.snapshot(), snapshot);
    assert.equal(restored.directory?.ring.epoch, 3);
    assert.equal(restored.directory?.changedAt, 4);
    assert.deepEqual(groupsOf(restored), groupsOf(original));
    for (let i = 0; i < 200; i++) assert.equal(restored.directory?.ring.ownerOf(`k${i}`), original.directory?.ring.ownerOf(`k${i}`));

    // The same later commands give the same results and the same state on both.
    const later: MetaCommand[] = [
      { type: 'add_group', groupId: 'g4', addresses: ['10.0.0.4:7101'] },
      BOOTSTRAP,
      { type: 'set_group_addresses', groupId: 'g4', addresses: ['10.0.0.1:7101'] },
    ];
    assert.deepEqual(applyAll(restored, later, 5), applyAll(original, later, 5));
    assert.deepEqual(restored.snapshot(), original.snapshot());
  });

  it('restore refuses a snapshot it cannot read rather than restoring part of it', () => {
    const machine = bootstrapped();
    assert.throws(() => machine.restore(Buffer.from('{"format":2,"directory":null}')), /^Error: meta snapshot: format 2 is not one this version reads \(1\)/);
    assert.throws(() => machine.restore(Buffer.from('nope')), /meta snapshot: not JSON/);
    assert.throws(
      () => machine.restore(Buffer.from('{"format":1,"directory":{"ringEpoch":1,"vnodes":8,"changedAt":1,"groups":[]}}')),
      /meta snapshot: directory: must name at least one shard group/,
    );
    assert.equal(machine.directory?.ring.epoch, 1);
  });
});
