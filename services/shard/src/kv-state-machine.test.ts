import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ShardCommand } from '@concord/proto/shard';
import { KvStateMachine } from './kv-state-machine.js';
import { compareKeys } from './key-order.js';

function put(key: string, value: string | Buffer, expectedVersion?: number): Uint8Array {
  const bytes = typeof value === 'string' ? Buffer.from(value) : value;
  return ShardCommand.encode({ command: { $case: 'put', value: { key, value: bytes, expectedVersion } } }).finish();
}

function del(key: string, expectedVersion?: number): Uint8Array {
  return ShardCommand.encode({ command: { $case: 'delete', value: { key, expectedVersion } } }).finish();
}

/** Applies commands at consecutive indexes starting at `firstIndex`. */
function applyAll(machine: KvStateMachine, commands: Uint8Array[], firstIndex = 1): void {
  commands.forEach((command, i) => machine.apply(command, firstIndex + i));
}

function keysOf(entries: Iterable<{ key: string }>): string[] {
  return [...entries].map((entry) => entry.key);
}

/** The store's order, computed the slow obvious way. */
function byUtf8(keys: string[]): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}

describe('KvStateMachine writes', () => {
  it('gives a put the log index as its version', () => {
    const machine = new KvStateMachine();
    assert.deepEqual(machine.apply(put('a', 'one'), 7), { applied: true, version: 7, existed: false });
    assert.deepEqual(machine.apply(put('a', 'two'), 9), { applied: true, version: 9, existed: true });
    const stored = machine.get('a');
    assert.equal(stored?.version, 9);
    assert.equal(stored?.value.toString(), 'two');
    assert.equal(machine.keyCount, 1);
  });

  it('treats expected_version 0 as "must not exist"', () => {
    const machine = new KvStateMachine();
    assert.deepEqual(machine.apply(put('k', 'v1', 0), 1), { applied: true, version: 1, existed: false });
    assert.deepEqual(machine.apply(put('k', 'v2', 0), 2), { applied: false, version: 1, existed: true });
    assert.equal(machine.get('k')?.value.toString(), 'v1');
    assert.equal(machine.get('k')?.version, 1);
  });

  it('applies a put whose expected_version matches and refuses one that does not, changing nothing', () => {
    const machine = new KvStateMachine();
    machine.apply(put('k', 'v1'), 3);
    assert.deepEqual(machine.apply(put('k', 'v2', 3), 4), { applied: true, version: 4, existed: true });
    assert.deepEqual(machine.apply(put('k', 'v3', 3), 5), { applied: false, version: 4, existed: true });
    assert.equal(machine.get('k')?.value.toString(), 'v2');
    assert.equal(machine.get('k')?.version, 4);
    // A missing key has version 0, so any non-zero expectation fails.
    assert.deepEqual(machine.apply(put('absent', 'x', 4), 6), { applied: false, version: 0, existed: false });
    assert.equal(machine.get('absent'), undefined);
  });

  it('deletes, reporting the previous version, and honours expected_version', () => {
    const machine = new KvStateMachine();
    machine.apply(put('k', 'v'), 1);
    assert.deepEqual(machine.apply(del('k', 2), 2), { applied: false, version: 1, existed: true });
    assert.equal(machine.get('k')?.version, 1);
    assert.deepEqual(machine.apply(del('k', 1), 3), { applied: true, version: 1, existed: true });
    assert.equal(machine.get('k'), undefined);
    assert.deepEqual(machine.apply(del('k'), 4), { applied: true, version: 0, existed: false });
    assert.deepEqual(machine.apply(del('k', 0), 5), { applied: true, version: 0, existed: false });
    assert.equal(machine.keyCount, 0);
  });

  it('keeps a copy of a stored value, not a view into what it was decoded from', () => {
    // The command shares a large buffer with other bytes (as a log entry cut from Node's buffer
    // pool, or an append message, does): the stored value must not keep that buffer alive.
    const command = put('k', Buffer.alloc(300, 7));
    const shared = Buffer.alloc(64 * 1024);
    shared.set(command, 1000);
    const machine = new KvStateMachine();
    machine.apply(shared.subarray(1000, 1000 + command.byteLength), 1);
    shared.fill(0);
    const stored = machine.get('k')?.value;
    assert.deepEqual(stored, Buffer.alloc(300, 7));
    assert.notEqual(stored?.buffer, shared.buffer);
    const snapshot = Buffer.from(machine.snapshot());
    const restored = new KvStateMachine();
    restored.restore(snapshot);
    snapshot.fill(0);
    assert.notEqual(restored.get('k')?.value.buffer, snapshot.buffer);
    assert.deepEqual(restored.get('k')?.value, Buffer.alloc(300, 7));
  });

  it('keeps empty values distinct from missing keys', () => {
    const machine = new KvStateMachine();
    machine.apply(put('empty', Buffer.alloc(0)), 1);
    assert.equal(machine.get('empty')?.value.byteLength, 0);
    assert.equal(machine.keyCount, 1);
  });

  it('is deterministic: the same commands give byte-identical snapshots', () => {
    const commands = [put('b', 'x'), put('a', 'y', 0), del('b'), put('c', 'z'), put('a', 'w', 2), put('c', 'q', 99)];
    const one = new KvStateMachine();
    const two = new KvStateMachine();
    applyAll(one, commands);
    applyAll(two, commands);
    assert.deepEqual(Buffer.from(one.snapshot()), Buffer.from(two.snapshot()));
  });

  it('refuses a command with no operation instead of guessing', () => {
    const machine = new KvStateMachine();
    const empty = ShardCommand.encode({ command: undefined }).finish();
    assert.throws(() => machine.apply(empty, 1), /log index 1 holds no operation/);
  });
});

describe('KvStateMachine scans', () => {
  // Code units and code points disagree here: U+1F600 is a surrogate pair (0xD83D 0xDE00), which
  // UTF-16 order puts before U+E000 and U+FFFD but UTF-8 order puts after them.
  const unicodeKeys = ['a', 'ab', 'a\u0000', 'b', 'é', '\uE000', '\uFFFD', '😀', '😀x', '日本', 'Z', '~', 'a😀', 'a\uFFFD'];

  function machineWith(keys: string[]): KvStateMachine {
    const machine = new KvStateMachine();
    applyAll(machine, keys.map((key) => put(key, `value of ${key}`)));
    return machine;
  }

  it('returns every key in UTF-8 byte order', () => {
    const machine = machineWith(unicodeKeys);
    assert.deepEqual(keysOf(machine.scan({})), byUtf8(unicodeKeys));
  });

  it('agrees with UTF-8 byte order on random strings, surrogate pairs included', () => {
    let seed = 12345;
    const next = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    const alphabet = ['a', 'b', '\u007F', '\u0080', '\u07FF', '\u0800', '\uD7FF', '\uE000', '\uFFFF', '\u{10000}', '\u{1F600}', '\u{10FFFF}'];
    const keys = new Set<string>();
    for (let i = 0; i < 500; i++) {
      let key = '';
      const length = 1 + (next() % 5);
      for (let j = 0; j < length; j++) key += alphabet[next() % alphabet.length];
      keys.add(key);
    }
    const sorted = byUtf8([...keys]);
    assert.deepEqual(keysOf(machineWith([...keys]).scan({})), sorted);
    for (let i = 1; i < sorted.length; i++) assert.ok(compareKeys(sorted[i - 1]!, sorted[i]!) < 0);
  });

  it('scans a prefix, including a prefix ending in a surrogate pair', () => {
    const machine = machineWith(unicodeKeys);
    assert.deepEqual(keysOf(machine.scan({ prefix: 'a' })), byUtf8(['a', 'ab', 'a\u0000', 'a😀', 'a\uFFFD']));
    assert.deepEqual(keysOf(machine.scan({ prefix: '😀' })), ['😀', '😀x']);
    assert.deepEqual(keysOf(machine.scan({ prefix: 'nothing' })), []);
  });

  it('scans [start, end) with either end open', () => {
    const machine = machineWith(unicodeKeys);
    const all = byUtf8(unicodeKeys);
    const inRange = (start: string, end: string): string[] =>
      all.filter((key) => (start === '' || compareKeys(key, start) >= 0) && (end === '' || compareKeys(key, end) < 0));
    assert.deepEqual(keysOf(machine.scan({ startKey: 'ab', endKey: '\uFFFD' })), inRange('ab', '\uFFFD'));
    assert.deepEqual(keysOf(machine.scan({ startKey: 'b' })), inRange('b', ''));
    assert.deepEqual(keysOf(machine.scan({ endKey: 'b' })), inRange('', 'b'));
    assert.deepEqual(keysOf(machine.scan({ startKey: '\uE000', endKey: '😀' })), ['\uE000', '\uFFFD']);
    assert.deepEqual(keysOf(machine.scan({ startKey: 'b', endKey: 'ba' })), ['b']);
  });

  it('stops at the limit', () => {
    const machine = machineWith(unicodeKeys);
    assert.deepEqual(keysOf(machine.scan({ limit: 3 })), byUtf8(unicodeKeys).slice(0, 3));
    assert.deepEqual(keysOf(machine.scan({ prefix: 'a', limit: 2 })), byUtf8(['a', 'ab', 'a\u0000', 'a😀', 'a\uFFFD']).slice(0, 2));
    assert.deepEqual(keysOf(machine.scan({ limit: 0 })), []);
  });

  it('returns values and versions with the keys', () => {
    const machine = machineWith(['x', 'y']);
    assert.deepEqual(
      [...machine.scan({})].map((kv) => [kv.key, kv.value.toString(), kv.version]),
      [
        ['x', 'value of x', 1],
        ['y', 'value of y', 2],
      ],
    );
  });

  it('reads one consistent cut: writes applied mid-scan are not seen', () => {
    const machine = machineWith(['k1', 'k2', 'k3', 'k4']);
    const iterator = machine.scan({ prefix: 'k' });
    assert.equal(iterator.next().value?.key, 'k1');
    machine.apply(del('k2'), 10);
    machine.apply(put('k3', 'changed'), 11);
    machine.apply(put('k25', 'new'), 12);
    const rest = [...iterator].map((kv) => `${kv.key}@${kv.version}`);
    assert.deepEqual(rest, ['k2@2', 'k3@3', 'k4@4']);
    assert.deepEqual(keysOf(machine.scan({ prefix: 'k' })), ['k1', 'k25', 'k3', 'k4']);
    assert.equal(machine.get('k3')?.version, 11);
  });

  it('rejects a prefix combined with a range', () => {
    assert.throws(() => new KvStateMachine().scan({ prefix: 'a', endKey: 'b' }), /prefix cannot be combined/);
  });
});

describe('KvStateMachine snapshots', () => {
  it('round-trips keys, values and versions exactly', () => {
    const source = new KvStateMachine();
    const commands: Uint8Array[] = [];
    for (let i = 0; i < 1000; i++) {
      const key = i % 3 === 0 ? `ключ-${i}-😀` : `key-${String(i).padStart(4, '0')}`;
      commands.push(put(key, i % 7 === 0 ? Buffer.alloc(0) : Buffer.alloc(i % 50, i % 256)));
    }
    commands.push(del('key-0001'), put('key-0002', 'again'));
    applyAll(source, commands, 2 ** 40); // versions above 2^32 exercise the u64 encoding
    const restored = new KvStateMachine();
    restored.apply(put('stale', 'replaced by restore'), 1);
    restored.restore(source.snapshot());
    assert.equal(restored.get('stale'), undefined);
    assert.equal(restored.keyCount, source.keyCount);
    assert.deepEqual([...restored.scan({})], [...source.scan({})]);
    assert.deepEqual(Buffer.from(restored.snapshot()), Buffer.from(source.snapshot()));
    assert.equal(restored.get('key-0002')?.version, 2 ** 40 + 1001);
  });

  it('round-trips an empty state', () => {
    const restored = new KvStateMachine();
    restored.restore(new KvStateMachine().snapshot());
    assert.equal(restored.keyCount, 0);
  });

  it('handles 100k keys', () => {
    const source = new KvStateMachine();
    for (let i = 0; i < 100_000; i++) source.apply(put(`user/${i}`, `profile ${i}`), i + 1);
    const snapshot = source.snapshot();
    const restored = new KvStateMachine();
    restored.restore(snapshot);
    assert.equal(restored.keyCount, 100_000);
    assert.equal(restored.get('user/99999')?.value.toString(), 'profile 99999');
    assert.equal(restored.get('user/99999')?.version, 100_000);
  });

  it('snapshotChunks gives the bytes of snapshot() at the moment of the call, in pieces, whatever is applied meanwhile', async () => {
    const machine = new KvStateMachine();
    applyAll(machine, Array.from({ length: 5000 }, (_, i) => put(`k${String(i).padStart(5, '0')}`, `v${i}`)));
    // One value larger than a piece: it comes as a piece of its own.
    machine.apply(put('k02000-large', Buffer.alloc(10_000, 7)), 5001);
    const expected = Buffer.from(machine.snapshot());
    const chunks = machine.snapshotChunks(4096);
    // Writes between the pieces: overwrite, delete, and a new key in the middle of the order.
    let index = 5002;
    const pieces: Buffer[] = [];
    for await (const piece of chunks) {
      // Copied: the next piece reuses the buffer.
      pieces.push(Buffer.from(piece));
      const i = pieces.length;
      machine.apply(put(`k${String(i * 7).padStart(5, '0')}`, 'changed'), index++);
      machine.apply(del(`k${String(4999 - i).padStart(5, '0')}`), index++);
      machine.apply(put(`k02500-${i}`, 'inserted'), index++);
    }
    assert.ok(pieces.length > 10, `${pieces.length} pieces`);
    assert.ok(pieces.some((piece) => piece.length > 10_000), 'the large entry came as a piece of its own');
    assert.ok(pieces.every((piece) => piece.length <= 4096 || piece.length > 10_000), 'the other pieces fit the buffer');
    assert.deepEqual(Buffer.concat(pieces), expected);
    assert.notDeepEqual(Buffer.from(machine.snapshot()), expected, 'the writes did land in the live state');
    const restored = new KvStateMachine();
    restored.restore(Buffer.concat(pieces));
    assert.equal(restored.get('k00000')?.value.toString(), 'v0');
    assert.equal(restored.get('k02000-large')?.value.length, 10_000);
  });

  it('rejects a malformed snapshot and keeps its state', () => {
    const machine = new KvStateMachine();
    machine.apply(put('keep', 'me'), 1);
    const other = new KvStateMachine();
    other.apply(put('a', 'b'), 1);
    const good = Buffer.from(other.snapshot());
    assert.throws(() => machine.restore(Buffer.from('nope')), /CKV1 header/);
    assert.throws(() => machine.restore(good.subarray(0, good.length - 1)), /truncated/);
    assert.throws(() => machine.restore(Buffer.concat([good, Buffer.from([0])])), /after the last entry/);
    assert.equal(machine.get('keep')?.value.toString(), 'me');
  });
});
