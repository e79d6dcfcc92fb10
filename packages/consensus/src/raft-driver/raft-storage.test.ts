import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WriteAheadLog } from '@concord/storage';
import type { Entry, HardState, SnapshotMeta } from '../raft/types.js';
import { RaftStorage, type RaftStorageOptions } from './raft-storage.js';
import { encodeEntries, encodeHardState, type SnapshotPayload } from './storage-codec.js';
import { StoredLogGapError } from './stored-log.js';

function entry(index: number, term: number, text = `cmd-${index}`): Entry {
  return { index, term, type: 'normal', data: Buffer.from(text) };
}

function entries(from: number, to: number, term: number, text?: (index: number) => string): Entry[] {
  const list: Entry[] = [];
  for (let i = from; i <= to; i++) list.push(entry(i, term, text?.(i)));
  return list;
}

/** Index, term and text of each entry: what the tests compare. */
function summary(list: readonly Entry[]): [number, number, string][] {
  return list.map((e) => [e.index, e.term, Buffer.from(e.data).toString()]);
}

const MEMBERSHIP = { voters: ['a', 'b', 'c'], learners: [] };

function payload(index: number, term: number, state: string): SnapshotPayload {
  const meta: SnapshotMeta = { index, term, membership: MEMBERSHIP };
  return { meta, addresses: { a: '127.0.0.1:1', b: '127.0.0.1:2', c: '127.0.0.1:3' }, stateMachineData: Buffer.from(state) };
}

describe('RaftStorage', () => {
  let dir: string;
  const open: RaftStorage[] = [];

  async function openStorage(options: Partial<RaftStorageOptions> = {}): Promise<Awaited<ReturnType<typeof RaftStorage.open>>> {
    const opened = await RaftStorage.open({ dir, sync: false, ...options });
    open.push(opened.storage);
    return opened;
  }

  /** Closes `storage` (a clean stop, or, since every append already resolved, the same as a crash) and reopens. */
  async function reopen(storage: RaftStorage, options: Partial<RaftStorageOptions> = {}): Promise<Awaited<ReturnType<typeof RaftStorage.open>>> {
    await storage.close();
    return openStorage(options);
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'concord-raft-storage-'));
  });

  afterEach(async () => {
    for (const storage of open.splice(0)) await storage.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('starts empty', async () => {
    const { recovered } = await openStorage();
    assert.deepEqual(recovered.hardState, { term: 0, vote: '', commit: 0 });
    assert.deepEqual(recovered.entries, []);
    assert.equal(recovered.snapshot, undefined);
    assert.equal(recovered.bootstrap, undefined);
  });

  it('replays the bootstrap record, the last HardState and the entries', async () => {
    const { storage } = await openStorage();
    await storage.bootstrap({ voters: ['a', 'b', 'c'], addresses: { a: 'h:1', b: 'h:2', c: 'h:3' } });
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 0 }, entries: entries(1, 3, 1) });
    await storage.persist({ hardState: { term: 2, vote: 'b', commit: 3 }, entries: entries(4, 5, 2) });
    const { recovered } = await reopen(storage);
    assert.deepEqual(recovered.bootstrap, { voters: ['a', 'b', 'c'], addresses: { a: 'h:1', b: 'h:2', c: 'h:3' } });
    assert.deepEqual(recovered.hardState, { term: 2, vote: 'b', commit: 3 });
    assert.deepEqual(summary(recovered.entries), summary([...entries(1, 3, 1), ...entries(4, 5, 2)]));
  });

  it('persists one Ready with one WAL append (one group-commit batch)', async () => {
    const { storage } = await openStorage();
    const before = storage.walStats().batches;
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 0 }, entries: entries(1, 50, 1) });
    assert.equal(storage.walStats().batches, before + 1);
  });

  it('writes a hard state that only moves the commit index with the next append, not on its own', async () => {
    const { storage } = await openStorage();
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 0 }, entries: entries(1, 4, 1) });
    const before = storage.walStats();
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 3 }, entries: [] });
    assert.deepEqual(storage.walStats(), before, 'a commit-only Ready costs no write');
    // A crash now (a second reader of the files; the first storage is never closed) loses that
    // commit index and nothing else: it is learned again from the leader.
    const crashed = await RaftStorage.open({ dir, sync: false });
    open.push(crashed.storage);
    assert.deepEqual(crashed.recovered.hardState, { term: 1, vote: 'a', commit: 0 });
    assert.deepEqual(summary(crashed.recovered.entries), summary(entries(1, 4, 1)));
    await crashed.storage.close();
    open.pop();

    // The next append carries it.
    await storage.persist({ entries: entries(5, 5, 1) });
    assert.equal(storage.walStats().batches, before.batches + 1);
    const later = await RaftStorage.open({ dir, sync: false });
    open.push(later.storage);
    assert.deepEqual(later.recovered.hardState, { term: 1, vote: 'a', commit: 3 });
    await later.storage.close();
    open.pop();

    // A new term or vote is written at once, and a clean stop writes the last commit index.
    await storage.persist({ hardState: { term: 2, vote: '', commit: 3 }, entries: [] });
    assert.equal(storage.walStats().batches, before.batches + 2);
    await storage.persist({ hardState: { term: 2, vote: '', commit: 5 }, entries: [] });
    const { recovered } = await reopen(storage);
    assert.deepEqual(recovered.hardState, { term: 2, vote: '', commit: 5 });
  });

  it('a later entries record replaces the stored suffix from its first index (Raft §5.3)', async () => {
    const { storage } = await openStorage();
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 2 }, entries: entries(1, 6, 1) });
    // A new leader of term 2 overwrote 4..6 with its own entries, then the log grew again.
    await storage.persist({ hardState: { term: 2, vote: 'b', commit: 2 }, entries: entries(4, 5, 2, (i) => `new-${i}`) });
    await storage.persist({ entries: entries(6, 7, 2, (i) => `new-${i}`) });
    const { storage: reopened, recovered } = await reopen(storage);
    assert.deepEqual(summary(recovered.entries), [
      [1, 1, 'cmd-1'],
      [2, 1, 'cmd-2'],
      [3, 1, 'cmd-3'],
      [4, 2, 'new-4'],
      [5, 2, 'new-5'],
      [6, 2, 'new-6'],
      [7, 2, 'new-7'],
    ]);
    // And the truncation is remembered across restarts too.
    await reopened.persist({ entries: entries(3, 3, 3, () => 'third') });
    const { recovered: again } = await reopen(reopened);
    assert.deepEqual(summary(again.entries), [
      [1, 1, 'cmd-1'],
      [2, 1, 'cmd-2'],
      [3, 3, 'third'],
    ]);
  });

  it('snapshots, compacts the WAL behind the snapshot and recovers snapshot + later entries', async () => {
    const { storage } = await openStorage({ segmentBytes: 4096 });
    await storage.bootstrap({ voters: ['a', 'b', 'c'], addresses: { a: 'h:1', b: 'h:2', c: 'h:3' } });
    const hardState: HardState = { term: 3, vote: 'a', commit: 0 };
    await storage.persist({ hardState, entries: [] });
    const text = (i: number): string => `command number ${i} `.padEnd(200, '.');
    for (let i = 1; i <= 200; i += 10) await storage.persist({ entries: entries(i, i + 9, 3, text) });
    await storage.persist({ hardState: { ...hardState, commit: 200 }, entries: [] });
    const segmentsBefore = storage.walStats().segmentCount;
    assert.ok(segmentsBefore > 5, `expected several segments, got ${segmentsBefore}`);

    const snapshot = payload(150, 3, 'state@150');
    assert.equal(await storage.writeSnapshotFile(snapshot), true);
    assert.equal(await storage.recordSnapshot(snapshot.meta), true);
    assert.equal(storage.snapshotIndex, 150);
    const segmentsAfter = storage.walStats().segmentCount;
    assert.ok(segmentsAfter < segmentsBefore, `compaction should drop segments (${segmentsBefore} → ${segmentsAfter})`);

    // An older snapshot never replaces a newer one.
    assert.equal(await storage.writeSnapshotFile(payload(100, 3, 'older')), false);
    assert.equal(await storage.recordSnapshot({ index: 100, term: 3, membership: MEMBERSHIP }), false);

    const { recovered } = await reopen(storage, { segmentBytes: 4096 });
    assert.deepEqual(recovered.snapshot?.meta, snapshot.meta);
    assert.equal(Buffer.from(recovered.snapshot.stateMachineData).toString(), 'state@150');
    assert.deepEqual(recovered.snapshot.addresses, snapshot.addresses);
    // The HardState survives although the segment of its last record was dropped.
    assert.deepEqual(recovered.hardState, { term: 3, vote: 'a', commit: 200 });
    assert.deepEqual(summary(recovered.entries), summary(entries(151, 200, 3, text)));
  });

  it('recovers when a crash came between writing the snapshot file and appending its marker', async () => {
    const { storage } = await openStorage();
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 8 }, entries: entries(1, 10, 1) });
    await storage.writeSnapshotFile(payload(8, 1, 'state@8'));
    // No recordSnapshot: the process died here.
    const { storage: reopened, recovered } = await reopen(storage);
    assert.equal(recovered.snapshot?.meta.index, 8);
    assert.deepEqual(summary(recovered.entries), summary(entries(9, 10, 1)));
    // Recovery appended the missing marker, so the log keeps replaying after more appends.
    await reopened.persist({ entries: entries(11, 12, 1) });
    const { recovered: again } = await reopen(reopened);
    assert.equal(again.snapshot?.meta.index, 8);
    assert.deepEqual(summary(again.entries), summary(entries(9, 12, 1)));
  });

  it('a snapshot received from the leader discards a divergent log (Raft §7)', async () => {
    const { storage } = await openStorage();
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 2 }, entries: entries(1, 10, 1) });
    // The leader's log has index 8 at term 2: everything stored here past the commit diverges.
    await storage.persist({
      hardState: { term: 2, vote: '', commit: 8 },
      entries: entries(9, 9, 2, () => 'leader-9'),
      snapshot: payload(8, 2, 'state@8'),
    });
    assert.equal(storage.snapshotIndex, 8);
    const { storage: reopened, recovered } = await reopen(storage);
    assert.deepEqual(recovered.snapshot?.meta, payload(8, 2, '').meta);
    assert.deepEqual(summary(recovered.entries), [[9, 2, 'leader-9']]);
    assert.deepEqual(recovered.hardState, { term: 2, vote: '', commit: 8 });
    await reopened.persist({ entries: entries(10, 10, 2) });
    const { recovered: again } = await reopen(reopened);
    assert.deepEqual(summary(again.entries), [
      [9, 2, 'leader-9'],
      [10, 2, 'cmd-10'],
    ]);
  });

  it('a received snapshot that matches the stored log keeps the entries after it', async () => {
    const { storage } = await openStorage();
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 2 }, entries: entries(1, 10, 1) });
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 8 }, entries: [], snapshot: payload(8, 1, 'state@8') });
    const { recovered } = await reopen(storage);
    assert.deepEqual(summary(recovered.entries), summary(entries(9, 10, 1)));
  });

  it('a received snapshot whose marker was lost in a crash still replaces the divergent log', async () => {
    const { storage } = await openStorage();
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 2 }, entries: entries(1, 10, 1) });
    await storage.writeSnapshotFile(payload(8, 2, 'state@8'));
    const { storage: reopened, recovered } = await reopen(storage);
    assert.equal(recovered.snapshot?.meta.index, 8);
    assert.deepEqual(recovered.entries, []);
    assert.equal(recovered.hardState.commit, 8, 'a snapshot holds only committed entries');
    await reopened.persist({ entries: entries(9, 10, 2) });
    const { recovered: again } = await reopen(reopened);
    assert.deepEqual(summary(again.entries), summary(entries(9, 10, 2)));
  });

  it('refuses to start on a log with a hole in it', async () => {
    const { wal } = await WriteAheadLog.open({ dir: join(dir, 'wal'), sync: false });
    await wal.append([encodeHardState({ term: 1, vote: 'a', commit: 0 }), encodeEntries(entries(1, 3, 1)), encodeEntries(entries(5, 6, 1))]);
    await wal.close();
    await assert.rejects(RaftStorage.open({ dir, sync: false }), StoredLogGapError);
  });

  it('refuses to start on a log whose start was dropped without a snapshot', async () => {
    const { wal } = await WriteAheadLog.open({ dir: join(dir, 'wal'), sync: false });
    await wal.append([encodeEntries(entries(4, 6, 1))]);
    await wal.close();
    await assert.rejects(RaftStorage.open({ dir, sync: false }), /starts at index 4 and there is no snapshot/);
  });

  it('splits a large Ready into several records of one append', async () => {
    const { storage } = await openStorage();
    const big = Buffer.alloc(3 * 1024 * 1024, 7);
    const list: Entry[] = [1, 2, 3].map((index) => ({ index, term: 1, type: 'normal', data: big }));
    const before = storage.walStats();
    await storage.persist({ hardState: { term: 1, vote: 'a', commit: 0 }, entries: list });
    const after = storage.walStats();
    assert.equal(after.batches, before.batches + 1);
    assert.ok(after.records - before.records >= 3, 'three 3 MiB entries do not fit one record');
    const { recovered } = await reopen(storage);
    assert.deepEqual(
      recovered.entries.map((e) => [e.index, e.data.byteLength]),
      [1, 2, 3].map((index) => [index, big.length]),
    );
  });
});

describe('the WAL record codec', () => {
  it('writes 64-bit fields little-endian, exact up to 2^53 - 1, and refuses to read beyond', async () => {
    const { decodeRecord } = await import('./storage-codec.js');
    const term = 2 ** 40 + 7;
    const commit = Number.MAX_SAFE_INTEGER;
    const record = encodeHardState({ term, commit, vote: 'm1' });
    // kind, then term and commit as unsigned 64-bit little-endian integers.
    assert.equal(record.readBigUInt64LE(1), BigInt(term));
    assert.equal(record.readBigUInt64LE(9), BigInt(commit));
    assert.deepEqual(decodeRecord(record), { kind: 'hard_state', hardState: { term, commit, vote: 'm1' } });
    const entries = encodeEntries([{ term: 3, index: 2 ** 33, type: 'normal', data: Buffer.from('x') }]);
    assert.deepEqual(decodeRecord(entries), { kind: 'entries', entries: [{ term: 3, index: 2 ** 33, type: 'normal', data: Buffer.from('x') }] });
    const beyond = Buffer.from(record);
    beyond.writeBigUInt64LE(2n ** 53n, 9);
    assert.throws(() => decodeRecord(beyond), /commit 9007199254740992 is out of range/);
    assert.throws(() => encodeHardState({ term: 2 ** 53, commit: 0, vote: '' }), /cannot store/);
  });
});
