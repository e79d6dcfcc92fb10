import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_VNODES_PER_GROUP, MAX_VNODES_PER_GROUP, compareGroupIds, validateRingConfig, type RingConfig } from './config.js';
import { HashRing } from './ring.js';

const GOOD: RingConfig = { epoch: 0, vnodesPerGroup: DEFAULT_VNODES_PER_GROUP, groups: ['g1', 'g2'] };

/** Builds a config with one field replaced by a value of any type, as a decoded JSON/proto might hold. */
function withField(field: keyof RingConfig, value: unknown): RingConfig {
  return { ...GOOD, [field]: value } as unknown as RingConfig;
}

describe('ring config validation: a bad config is refused with a message naming the field', () => {
  it('accepts the documented limits', () => {
    assert.equal(DEFAULT_VNODES_PER_GROUP, 128);
    assert.equal(MAX_VNODES_PER_GROUP, 4096);
    for (const vnodesPerGroup of [1, 128, 4096]) validateRingConfig({ ...GOOD, vnodesPerGroup });
    validateRingConfig({ ...GOOD, epoch: Number.MAX_SAFE_INTEGER });
  });

  it('epoch must be a non-negative integer', () => {
    for (const bad of [-1, 0.5, Number.NaN, '1', undefined, 2 ** 53]) {
      assert.throws(() => new HashRing(withField('epoch', bad)), /ring config: epoch must be a non-negative integer/);
    }
  });

  it('vnodesPerGroup must be an integer from 1 to 4096', () => {
    for (const bad of [0, -3, 4097, 1.5, Number.NaN, '128', undefined]) {
      assert.throws(
        () => new HashRing(withField('vnodesPerGroup', bad)),
        /ring config: vnodesPerGroup must be an integer from 1 to 4096/,
      );
    }
  });

  it('groups must be a non-empty array', () => {
    assert.throws(() => new HashRing(withField('groups', [])), /ring config: groups must name at least one group/);
    assert.throws(() => new HashRing(withField('groups', 'g1')), /ring config: groups must be an array/);
    assert.throws(() => new HashRing(withField('groups', undefined)), /ring config: groups must be an array/);
  });

  it('each group id must be a non-empty string, named by position', () => {
    assert.throws(() => new HashRing(withField('groups', ['g1', ''])), /ring config: groups\[1\] must be a non-empty string/);
    assert.throws(() => new HashRing(withField('groups', [7])), /ring config: groups\[0\] must be a non-empty string, got 7/);
  });

  it('group ids must be unique', () => {
    assert.throws(() => new HashRing(withField('groups', ['g1', 'g2', 'g1'])), /ring config: groups\[2\] repeats group id "g1"/);
  });

  it('group ids must be well-formed Unicode, or two ids could share every token', () => {
    // Both encode to the UTF-8 bytes of "g\uFFFD", so their virtual nodes would coincide.
    assert.throws(() => new HashRing(withField('groups', ['g\uD800'])), /groups\[0\] must be well-formed Unicode/);
    assert.throws(() => new HashRing(withField('groups', ['g1', 'g\uDC00'])), /groups\[1\] must be well-formed Unicode/);
    new HashRing({ ...GOOD, groups: ['g🔑'] }); // a surrogate pair is fine
  });

  it('a missing config is refused', () => {
    assert.throws(() => new HashRing(undefined as unknown as RingConfig), /ring config must be an object/);
  });

  it('the ring keeps its own frozen copy, so later edits to the caller’s array change nothing', () => {
    const groups = ['g2', 'g1'];
    const ring = new HashRing({ ...GOOD, groups });
    const owner = ring.ownerOf('user:42');
    groups.push('g3');
    groups[0] = 'zzz';
    assert.deepEqual(ring.groups, ['g1', 'g2']);
    assert.equal(ring.ownerOf('user:42'), owner);
    assert.ok(Object.isFrozen(ring.config) && Object.isFrozen(ring.groups));
  });
});

describe('compareGroupIds: the tie-break order is bytewise UTF-8 (= Unicode code point order)', () => {
  it('orders ASCII ids like plain string comparison', () => {
    assert.deepEqual(['g2', 'g10', 'g1', 'G1'].sort(compareGroupIds), ['G1', 'g1', 'g10', 'g2']);
  });

  it('puts U+FFFF before U+10000, where JavaScript’s UTF-16 comparison says the opposite', () => {
    const bmp = '\uFFFF';
    const astral = '\u{10000}';
    assert.ok(bmp > astral, 'UTF-16 code units: 0xFFFF > 0xD800');
    assert.ok(compareGroupIds(bmp, astral) < 0, 'UTF-8 bytes: EF BF BF < F0 90 80 80');
    assert.ok(compareGroupIds(astral, bmp) > 0);
    assert.equal(compareGroupIds('шард', 'шард'), 0);
  });

  it('gives the ring’s canonical group order', () => {
    const ring = new HashRing({ ...GOOD, groups: ['\u{10000}', 'b', '\uFFFF', 'a'] });
    assert.deepEqual(ring.groups, ['a', 'b', '\uFFFF', '\u{10000}']);
  });
});
