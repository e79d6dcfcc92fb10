import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HashRing } from './ring.js';
import { MAX_TOKEN, TOKEN_SPACE, keyToken } from './token.js';

// Cross-language vectors (docs/ring-hash.md), computed independently with the Python reference there.

/** Groups g1, g2, g3 with 4 virtual nodes each: the whole ring, in token order. */
const SMALL_RING_TABLE: ReadonlyArray<readonly [token: bigint, groupId: string]> = [
  [0x1565895df924c11an, 'g2'],
  [0x232cf0fa42b3f0b7n, 'g2'],
  [0x57aaefbfeac73d49n, 'g1'],
  [0x79a2384958ae40f9n, 'g2'],
  [0x907afd2e10734f9fn, 'g3'],
  [0xb6899992fa9ed6bbn, 'g1'],
  [0xc14c24acd84f393fn, 'g3'],
  [0xc79b77fde615dcd0n, 'g2'],
  [0xc916bd6e6eccfbben, 'g3'],
  [0xca3d564c633db5b8n, 'g1'],
  [0xe60f74809fa7afc5n, 'g3'],
  [0xf74e4c7d9f712d49n, 'g1'],
];

const SMALL_RING_OWNERS: ReadonlyArray<readonly [key: string, groupId: string]> = [
  ['', 'g3'],
  ['a', 'g3'],
  ['user:42', 'g1'],
  ['ключ', 'g2'],
  ['🔑', 'g2'],
  ['x'.repeat(4096), 'g1'],
  ['user:0', 'g1'],
  ['user:2', 'g2'], // token 0x0195…, below the lowest virtual node
  ['user:5', 'g3'],
  ['user:32', 'g2'], // token 0xfc80…, above the highest virtual node: wraps to the lowest
  ['g1#0', 'g1'], // token equal to virtual node g1#0: ">=" means that node owns it
  ['g3#3', 'g3'],
];

/** Groups g1, g2, g3 with the default 128 virtual nodes each. */
const DEFAULT_RING_OWNERS: ReadonlyArray<readonly [key: string, groupId: string]> = [
  ['', 'g1'],
  ['a', 'g2'],
  ['user:42', 'g3'],
  ['ключ', 'g1'],
  ['🔑', 'g3'],
  ['x'.repeat(4096), 'g2'],
  ['user:0', 'g1'],
  ['user:1', 'g3'],
  ['user:3', 'g2'],
  ['user:70', 'g3'], // above the highest virtual node (g1 at 0xffd0…): wraps to g3 at 0x00b6…
  ['user:1088', 'g3'], // below the lowest virtual node
];

const smallRing = (): HashRing => new HashRing({ epoch: 0, vnodesPerGroup: 4, groups: ['g1', 'g2', 'g3'] });
const defaultRing = (): HashRing => new HashRing({ epoch: 0, vnodesPerGroup: 128, groups: ['g1', 'g2', 'g3'] });

describe('ownership: first virtual node with token >= the key token, wrapping to the lowest', () => {
  it('matches the published virtual node table of the 3-group, 4-vnode ring', () => {
    const ring = smallRing();
    SMALL_RING_TABLE.forEach(([token, groupId], row) => {
      const next = SMALL_RING_TABLE[(row + 1) % SMALL_RING_TABLE.length]!;
      assert.equal(ring.ownerOfToken(token), groupId, `token ${token.toString(16)} itself`);
      if (token < MAX_TOKEN) assert.equal(ring.ownerOfToken(token + 1n), next[1], `just past ${token.toString(16)}`);
    });
    assert.equal(ring.ownerOfToken(0n), 'g2');
    assert.equal(ring.ownerOfToken(MAX_TOKEN), 'g2');
  });

  for (const [key, groupId] of SMALL_RING_OWNERS) {
    it(`3 groups x 4 vnodes: ${JSON.stringify(key.slice(0, 12))} belongs to ${groupId}`, () => {
      assert.equal(smallRing().ownerOf(key), groupId);
    });
  }

  for (const [key, groupId] of DEFAULT_RING_OWNERS) {
    it(`3 groups x 128 vnodes: ${JSON.stringify(key.slice(0, 12))} belongs to ${groupId}`, () => {
      assert.equal(defaultRing().ownerOf(key), groupId);
    });
  }

  it('ownerOf(key) is ownerOfToken(keyToken(key))', () => {
    const ring = defaultRing();
    for (let i = 0; i < 2000; i++) assert.equal(ring.ownerOf(`k${i}`), ring.ownerOfToken(keyToken(`k${i}`)));
  });

  it('depends on the set of groups, not on the order they are listed in', () => {
    const a = new HashRing({ epoch: 0, vnodesPerGroup: 16, groups: ['g1', 'g2', 'g3', 'g4'] });
    const b = new HashRing({ epoch: 0, vnodesPerGroup: 16, groups: ['g4', 'g2', 'g1', 'g3'] });
    for (let i = 0; i < 2000; i++) assert.equal(a.ownerOf(`k${i}`), b.ownerOf(`k${i}`));
  });

  it('a single group owns every token', () => {
    const ring = new HashRing({ epoch: 0, vnodesPerGroup: 1, groups: ['only'] });
    for (const token of [0n, 1n, 0x8000000000000000n, MAX_TOKEN]) assert.equal(ring.ownerOfToken(token), 'only');
    assert.deepEqual(ring.ownedTokens(), new Map([['only', TOKEN_SPACE]]));
    assert.deepEqual(ring.rangesOf('only'), [{ first: 0n, last: MAX_TOKEN }]);
  });

  it('ownerOfToken refuses tokens outside [0, 2^64)', () => {
    const ring = smallRing();
    assert.throws(() => ring.ownerOfToken(-1n), /token must be in \[0, 2\^64\)/);
    assert.throws(() => ring.ownerOfToken(TOKEN_SPACE), /token must be in \[0, 2\^64\)/);
  });
});

describe('shares and ranges: the exact partition of the 2^64 token space', () => {
  const rings = [smallRing(), defaultRing(), new HashRing({ epoch: 3, vnodesPerGroup: 7, groups: ['a', 'b', 'c', 'd', 'e'] })];

  it('ownedTokens sums to exactly 2^64 and shares to 1 within 1e-9', () => {
    for (const ring of rings) {
      const owned = [...ring.ownedTokens().values()];
      assert.equal(owned.reduce((sum, count) => sum + count, 0n), TOKEN_SPACE);
      const shares = ring.shares();
      assert.deepEqual([...shares.keys()], [...ring.groups]);
      const total = [...shares.values()].reduce((sum, share) => sum + share, 0);
      assert.ok(Math.abs(total - 1) < 1e-9, `shares sum to ${total}`);
      for (const share of shares.values()) assert.ok(share > 0 && share < 1);
    }
  });

  it('the small ring’s ownership follows from its virtual node table', () => {
    // g2 owns (f74e…, 2^64) ∪ [0, 1565…] ∪ (1565…, 232c…] ∪ (57aa…, 79a2…] ∪ (c14c…, c79b…].
    const expected =
      TOKEN_SPACE - 0xf74e4c7d9f712d49n + 0x232cf0fa42b3f0b7n + (0x79a2384958ae40f9n - 0x57aaefbfeac73d49n) +
      (0xc79b77fde615dcd0n - 0xc14c24acd84f393fn);
    assert.equal(smallRing().ownedTokens().get('g2'), expected);
    assert.deepEqual(
      smallRing().ownedTokens(),
      new Map([
        ['g1', 0x6cf20c0586790b2cn],
        ['g2', 0x542540571ef06aafn],
        ['g3', 0x3ee8b3a35a968a25n],
      ]),
    );
  });

  it('rangesOf partitions [0, 2^64) and agrees with ownerOfToken at every range edge', () => {
    for (const ring of rings) {
      const all = ring.groups.flatMap((groupId) => ring.rangesOf(groupId).map((range) => ({ ...range, groupId })));
      all.sort((x, y) => (x.first < y.first ? -1 : 1));
      let expectedFirst = 0n;
      for (const range of all) {
        assert.equal(range.first, expectedFirst, 'no gap and no overlap');
        assert.ok(range.first <= range.last);
        assert.equal(ring.ownerOfToken(range.first), range.groupId);
        assert.equal(ring.ownerOfToken(range.last), range.groupId);
        expectedFirst = range.last + 1n;
      }
      assert.equal(expectedFirst, TOKEN_SPACE);
      for (const groupId of ring.groups) {
        const size = ring.rangesOf(groupId).reduce((sum, r) => sum + (r.last - r.first + 1n), 0n);
        assert.equal(size, ring.ownedTokens().get(groupId));
      }
    }
  });

  it('rangesOf merges adjacent virtual nodes of one group and splits the wrapped range in two', () => {
    assert.deepEqual(smallRing().rangesOf('g2'), [
      { first: 0n, last: 0x232cf0fa42b3f0b7n }, // g2's first two virtual nodes are adjacent
      { first: 0x57aaefbfeac73d4an, last: 0x79a2384958ae40f9n },
      { first: 0xc14c24acd84f3940n, last: 0xc79b77fde615dcd0n },
      { first: 0xf74e4c7d9f712d4an, last: MAX_TOKEN }, // the wrapped piece above the highest node
    ]);
  });

  it('rangesOf refuses a group that is not on the ring', () => {
    assert.throws(() => smallRing().rangesOf('g9'), /group "g9" is not on the ring \(epoch 0\)/);
  });
});

describe('membership changes: new immutable rings at epoch + 1', () => {
  it('withGroup and withoutGroup increment the epoch and leave the original untouched', () => {
    const ring = new HashRing({ epoch: 7, vnodesPerGroup: 8, groups: ['g1', 'g2'] });
    const grown = ring.withGroup('g3');
    assert.equal(grown.epoch, 8);
    assert.deepEqual(grown.groups, ['g1', 'g2', 'g3']);
    assert.equal(grown.vnodesPerGroup, 8);
    const shrunk = grown.withoutGroup('g1');
    assert.equal(shrunk.epoch, 9);
    assert.deepEqual(shrunk.groups, ['g2', 'g3']);
    assert.equal(ring.epoch, 7);
    assert.deepEqual(ring.groups, ['g1', 'g2']);
  });

  it('adding then removing a group restores every key to its old owner', () => {
    const ring = defaultRing();
    const roundTrip = ring.withGroup('g4').withoutGroup('g4');
    assert.equal(roundTrip.epoch, ring.epoch + 2);
    for (let i = 0; i < 2000; i++) assert.equal(roundTrip.ownerOf(`k${i}`), ring.ownerOf(`k${i}`));
  });

  it('refuses to add a group twice or to add an invalid id', () => {
    const ring = smallRing();
    assert.throws(() => ring.withGroup('g2'), /group "g2" is already on the ring \(epoch 0\)/);
    assert.throws(() => ring.withGroup(''), /new group id must be a non-empty string/);
  });

  it('refuses to remove an unknown group or the last group', () => {
    assert.throws(() => smallRing().withoutGroup('g9'), /group "g9" is not on the ring/);
    const lone = new HashRing({ epoch: 0, vnodesPerGroup: 4, groups: ['g1'] });
    assert.throws(() => lone.withoutGroup('g1'), /cannot remove "g1": it is the last group/);
  });
});
