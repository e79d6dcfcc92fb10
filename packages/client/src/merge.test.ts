import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KeyValue } from '@concord/proto/common';
import type { PullSource } from './calls.js';
import { mergeByKey } from './merge.js';

/** A source over an array that records how far it was read and whether it was closed. */
function arraySource(keys: readonly string[]): PullSource<KeyValue> & { pulled: number; closed: boolean } {
  const source = {
    pulled: 0,
    closed: false,
    async next(): Promise<KeyValue | undefined> {
      const key = keys[source.pulled];
      if (key === undefined) return undefined;
      source.pulled++;
      return { key, value: Buffer.from(key), version: 1 };
    },
    close(): void {
      source.closed = true;
    },
  };
  return source;
}

async function keysOf(iterable: AsyncIterable<KeyValue>): Promise<string[]> {
  const keys: string[] = [];
  for await (const kv of iterable) keys.push(kv.key);
  return keys;
}

/** A deterministic PRNG (mulberry32), so a failing case replays. */
function prng(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('mergeByKey', () => {
  it('interleaves ordered sources into one ordered stream', async () => {
    const merged = await keysOf(mergeByKey([arraySource(['a', 'd', 'g']), arraySource(['b', 'e']), arraySource([]), arraySource(['c', 'f', 'h'])], 100));
    assert.deepEqual(merged, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']);
  });

  it('matches a sort of the union for random inputs', async () => {
    for (let seed = 1; seed <= 50; seed++) {
      const random = prng(seed);
      const all = new Set<string>();
      const sources = Array.from({ length: 1 + Math.floor(random() * 12) }, () => {
        const keys = Array.from({ length: Math.floor(random() * 30) }, () => `k${Math.floor(random() * 100000)}`).filter((key) => !all.has(key));
        keys.forEach((key) => all.add(key));
        return [...new Set(keys)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      });
      const expected = [...all].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      const limit = 1 + Math.floor(random() * 200);
      assert.deepEqual(await keysOf(mergeByKey(sources.map(arraySource), limit)), expected.slice(0, limit), `seed ${seed}`);
    }
  });

  it('reads no further than the limit needs and closes every source', async () => {
    const sources = [arraySource(['a', 'c', 'e', 'g']), arraySource(['b', 'd', 'f', 'h'])];
    assert.deepEqual(await keysOf(mergeByKey(sources, 3)), ['a', 'b', 'c']);
    // One head per source beyond what was yielded, at most.
    assert.ok(sources.every((source) => source.pulled <= 2));
    assert.ok(sources.every((source) => source.closed));
  });

  it('closes every source when the consumer stops early or a source fails', async () => {
    const sources = [arraySource(['a', 'c']), arraySource(['b'])];
    for await (const kv of mergeByKey(sources, 10)) {
      assert.equal(kv.key, 'a');
      break;
    }
    assert.ok(sources.every((source) => source.closed));

    const healthy = arraySource(['a']);
    const failing: PullSource<KeyValue> & { closed: boolean } = {
      closed: false,
      next: () => Promise.reject(new Error('stream broke')),
      close() {
        failing.closed = true;
      },
    };
    await assert.rejects(keysOf(mergeByKey([healthy, failing], 10)), /stream broke/);
    assert.ok(healthy.closed && failing.closed);
  });
});
