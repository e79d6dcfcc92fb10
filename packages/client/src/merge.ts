import type { KeyValue } from '@concord/proto/common';
import type { PullSource } from './calls.js';

/**
 * Orders keys as the store does: by their UTF-8 bytes. JavaScript's `<` compares UTF-16 code
 * units, which disagrees with byte order for characters beyond the BMP.
 */
export function compareKeyBytes(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

interface Head {
  kv: KeyValue;
  keyBytes: Buffer;
  source: number;
}

/** A binary min-heap of stream heads by key; ties (which a correct ring never produces) by source. */
class HeadHeap {
  private readonly heads: Head[] = [];

  get size(): number {
    return this.heads.length;
  }

  push(head: Head): void {
    const heads = this.heads;
    heads.push(head);
    let child = heads.length - 1;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!this.less(child, parent)) break;
      this.swap(child, parent);
      child = parent;
    }
  }

  pop(): Head | undefined {
    const heads = this.heads;
    const top = heads[0];
    const last = heads.pop();
    if (top === undefined || last === undefined || heads.length === 0) return top;
    heads[0] = last;
    let parent = 0;
    for (;;) {
      const left = parent * 2 + 1;
      const right = left + 1;
      let smallest = parent;
      if (left < heads.length && this.less(left, smallest)) smallest = left;
      if (right < heads.length && this.less(right, smallest)) smallest = right;
      if (smallest === parent) return top;
      this.swap(parent, smallest);
      parent = smallest;
    }
  }

  private less(i: number, j: number): boolean {
    const a = this.heads[i] as Head;
    const b = this.heads[j] as Head;
    const order = compareKeyBytes(a.keyBytes, b.keyBytes);
    return order !== 0 ? order < 0 : a.source < b.source;
  }

  private swap(i: number, j: number): void {
    const a = this.heads[i] as Head;
    this.heads[i] = this.heads[j] as Head;
    this.heads[j] = a;
  }
}

/**
 * Merges sources that are each in key order into one stream in key order, yielding at most `limit`
 * items. Holds one item per source: the first item of every source is pulled in parallel, then
 * only the source whose item was yielded is pulled again. Every source is closed when the merge
 * ends for any reason (limit reached, a source failed, or the consumer stopped early).
 */
export async function* mergeByKey(sources: readonly PullSource<KeyValue>[], limit: number): AsyncGenerator<KeyValue, void, undefined> {
  const heap = new HeadHeap();
  const pushHead = (kv: KeyValue | undefined, source: number): void => {
    if (kv !== undefined) heap.push({ kv, keyBytes: Buffer.from(kv.key, 'utf8'), source });
  };
  try {
    if (limit <= 0) return;
    const firsts = await Promise.all(sources.map((source) => source.next()));
    firsts.forEach(pushHead);
    let yielded = 0;
    for (;;) {
      const head = heap.pop();
      if (head === undefined) return;
      yield head.kv;
      yielded++;
      if (yielded >= limit) return;
      pushHead(await (sources[head.source] as PullSource<KeyValue>).next(), head.source);
    }
  } finally {
    for (const source of sources) source.close();
  }
}
