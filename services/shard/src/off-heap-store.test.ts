import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom as random } from '@concord/consensus';
import { OffHeapStore, type StoreView } from './off-heap-store.js';
import { compareKeys } from './key-order.js';

type Model = Map<string, { value: Buffer; version: number }>;

function sortedEntries(model: Model): { key: string; value: Buffer; version: number }[] {
  return [...model.entries()].sort(([a], [b]) => compareKeys(a, b)).map(([key, { value, version }]) => ({ key, value, version }));
}

function entriesOf(view: StoreView, from?: string): { key: string; value: Buffer; version: number }[] {
  return [...view.entries(from === undefined ? undefined : Buffer.from(from))].map(({ key, value, version }) => ({ key, value: Buffer.from(value), version }));
}

// Keys whose UTF-8 order differs from UTF-16 order (U+E000..U+FFFF against surrogate pairs),
// prefixes of one another, and the empty suffix.
const ALPHABET = ['a', 'b', 'z', '\u00e9', '\uE000', '\uFFFD', '😀', '𝄞', '0'];

function randomKey(next: () => number): string {
  const length = 1 + Math.floor(next() * 4);
  let key = '';
  for (let i = 0; i < length; i++) key += ALPHABET[Math.floor(next() * ALPHABET.length)];
  return key;
}

function randomValue(next: () => number, chunkBytes: number): Buffer {
  const roll = next();
  // Mostly small, some empty, some larger than a quarter of a chunk (a chunk of their own).
  const length = roll < 0.1 ? 0 : roll < 0.9 ? Math.floor(next() * 40) : Math.floor(chunkBytes / 4 + next() * chunkBytes);
  const value = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) value[i] = Math.floor(next() * 256);
  return value;
}

describe('OffHeapStore', () => {
  it('matches a plain map under random puts, overwrites and deletes, with views that keep their cut', () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const next = random(seed);
      const chunkBytes = 512;
      const store = new OffHeapStore({ chunkBytes, pageSlots: 4 });
      const model: Model = new Map();
      const views: { view: StoreView; expected: ReturnType<typeof sortedEntries>; from: string }[] = [];
      // A few hot keys written over and over beside many written about once: chunks keep some live
      // records while the rest of them dies, which only compaction reclaims.
      const hot = ['hot', 'hé', 'h😀'];
      for (let step = 1; step <= 3000; step++) {
        const roll = next();
        const key = next() < (seed % 2 === 0 ? 0.9 : 0.6) ? hot[Math.floor(next() * hot.length)]! : randomKey(next);
        if (roll < 0.6) {
          const value = randomValue(next, chunkBytes);
          store.set(key, value, step);
          model.set(key, { value, version: step });
        } else if (roll < 0.8) {
          assert.equal(store.delete(key), model.delete(key), `seed ${seed} step ${step}: delete ${key}`);
        } else if (roll < 0.97) {
          const got = store.get(key);
          const want = model.get(key);
          assert.equal(got === undefined, want === undefined, `seed ${seed} step ${step}: get ${key}`);
          if (got !== undefined && want !== undefined) {
            assert.ok(got.value.equals(want.value), `seed ${seed} step ${step}: value of ${key}`);
            assert.equal(got.version, want.version);
            assert.equal(store.version(key), want.version);
          }
        } else {
          const from = next() < 0.5 ? '' : randomKey(next);
          const expected = sortedEntries(model).filter((entry) => from === '' || compareKeys(entry.key, from) >= 0);
          views.push({ view: store.view(), expected, from });
        }
        assert.equal(store.size, model.size);
      }
      // The whole store in order, and every view as it was when taken, after all the later writes
      // and compactions; a cursor walks the same records.
      const final = store.view();
      assert.deepEqual(entriesOf(final), sortedEntries(model), `seed ${seed}: final contents`);
      const walked: { key: string; value: Buffer; version: number }[] = [];
      const cursor = final.cursor();
      while (cursor.next()) {
        const { chunk, keyStart, keyLength, valueStart, valueLength, version } = cursor;
        walked.push({ key: chunk.toString('utf8', keyStart, keyStart + keyLength), value: Buffer.from(chunk.subarray(valueStart, valueStart + valueLength)), version });
      }
      assert.deepEqual(walked, sortedEntries(model), `seed ${seed}: cursor`);
      for (const [i, { view, expected, from }] of views.entries()) {
        assert.deepEqual(entriesOf(view, from === '' ? undefined : from), expected, `seed ${seed}: view ${i} from ${JSON.stringify(from)}`);
      }
      // Compaction keeps what dead records hold within bounds: at most the live bytes or four
      // chunks, plus what the last write left.
      const { live, dead, held } = store.bytes;
      const recordBytes = sortedEntries(model).reduce((sum, { key, value }) => sum + 16 + Buffer.byteLength(key) + value.length, 0);
      assert.equal(live, recordBytes, `seed ${seed}: live bytes`);
      assert.equal(held, live + dead, `seed ${seed}: held bytes`);
      assert.ok(dead <= Math.max(live, 4 * chunkBytes) + 2 * chunkBytes, `seed ${seed}: ${dead} dead bytes against ${live} live`);
      assert.ok(store.compactions > 0, `seed ${seed}: no chunk was compacted`);
    }
  });

  it('keeps keys in UTF-8 byte order, which is code point order, across page splits', () => {
    const store = new OffHeapStore({ pageSlots: 4 });
    const keys = ['\uFFFD', '😀', 'a', '\uE000', 'ab', 'a\u0000', '𝄞', 'b', '', 'aa'].filter((key) => key !== '');
    keys.forEach((key, i) => store.set(key, Buffer.from([i]), i + 1));
    const expected = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.deepEqual(
      [...store.view().entries()].map((entry) => entry.key),
      expected,
    );
    // UTF-16 order would put the emoji before U+E000 and U+FFFD.
    assert.ok(expected.indexOf('😀') > expected.indexOf('\uFFFD'));
  });

  it('writes under an expected version only when it matches (0: the key must not exist), in one search', () => {
    const store = new OffHeapStore();
    assert.deepEqual(store.put('k', Buffer.from('a'), 5, 3), { previous: undefined, written: false });
    assert.deepEqual(store.put('k', Buffer.from('a'), 5, 0), { previous: undefined, written: true });
    assert.deepEqual(store.put('k', Buffer.from('b'), 6, 0), { previous: 5, written: false });
    assert.deepEqual(store.put('k', Buffer.from('b'), 6, 5), { previous: 5, written: true });
    assert.deepEqual(store.put('k', Buffer.from('c'), 7, undefined), { previous: 6, written: true });
    assert.equal(store.get('k')?.value.toString(), 'c');
    assert.equal(store.version('k'), 7);
    assert.equal(store.size, 1);
  });

  it('keeps order when keys come in increasing order and then fill in between', () => {
    const store = new OffHeapStore({ pageSlots: 4 });
    const keys = Array.from({ length: 200 }, (_, i) => `k${String(i * 2).padStart(4, '0')}`);
    keys.forEach((key, i) => store.set(key, Buffer.from(key), i + 1));
    const between = Array.from({ length: 200 }, (_, i) => `k${String(i * 2 + 1).padStart(4, '0')}`).reverse();
    between.forEach((key, i) => store.set(key, Buffer.from(key), 1000 + i));
    const all = [...keys, ...between].sort();
    assert.deepEqual(
      [...store.view().entries()].map((entry) => entry.key),
      all,
    );
    assert.deepEqual(
      [...store.view().entries(Buffer.from('k0101'))].slice(0, 3).map((entry) => entry.key),
      ['k0101', 'k0102', 'k0103'],
    );
    assert.ok(all.every((key) => store.get(key)?.value.toString() === key));
  });

  it('hands out values that later writes never change', () => {
    const store = new OffHeapStore({ chunkBytes: 256 });
    store.set('k', Buffer.from('first'), 1);
    const first = store.get('k')!.value;
    for (let i = 0; i < 500; i++) store.set('k', Buffer.from(`value ${i}`), i + 2);
    assert.equal(first.toString(), 'first');
    assert.equal(store.get('k')!.value.toString(), 'value 499');
    assert.equal(store.size, 1);
  });

  it('refuses sizes too small to work with', () => {
    assert.throws(() => new OffHeapStore({ chunkBytes: 8 }), /chunkBytes/);
    assert.throws(() => new OffHeapStore({ pageSlots: 2 }), /pageSlots/);
  });
});
