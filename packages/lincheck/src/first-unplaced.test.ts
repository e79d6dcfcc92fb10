import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FirstUnplaced } from './first-unplaced.js';
import { seededRandom } from './testing/random-kv-history.js';

describe('FirstUnplaced', () => {
  it('is 0 when nothing is placed and size when everything is', () => {
    const empty = new FirstUnplaced(0);
    assert.equal(empty.first(), 0);
    const three = new FirstUnplaced(3);
    assert.equal(three.first(), 0);
    [0, 1, 2].forEach((i) => three.place(i));
    assert.equal(three.first(), 3);
  });

  it('agrees with a linear scan under random placing and unplacing', () => {
    const random = seededRandom(42);
    for (const size of [1, 2, 5, 8, 13, 64, 100]) {
      const index = new FirstUnplaced(size);
      const placed = new Array<boolean>(size).fill(false);
      for (let round = 0; round < 2000; round++) {
        const position = Math.floor(random() * size);
        if (placed[position]) index.unplace(position);
        else index.place(position);
        placed[position] = !placed[position];
        const expected = placed.indexOf(false);
        assert.equal(index.first(), expected === -1 ? size : expected, `size ${size}, round ${round}`);
      }
    }
  });
});
