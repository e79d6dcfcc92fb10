import assert from 'node:assert/strict';
import { cp, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { WriteAheadLog, type WalPosition } from './wal.js';
import { FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, segmentFileName } from './wal-format.js';
import { nonZeroBytes, withTempDir } from './testing.js';

function record(i: number, size = 32): Buffer {
  const label = Buffer.from(`record-${i}:`);
  return Buffer.concat([label, nonZeroBytes(Math.max(0, size - label.length), i)]);
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.wal')).sort();
}

async function reopen(dir: string, options: { segmentBytes?: number } = {}) {
  const result = await WriteAheadLog.open({ dir, ...options });
  await result.wal.close();
  return result;
}

describe('WriteAheadLog basics', () => {
  it('round-trips records with their positions, empty records included', async () => {
    await withTempDir(async (dir) => {
      const { wal, records, truncatedBytes } = await WriteAheadLog.open({ dir });
      assert.deepEqual(records, []);
      assert.equal(truncatedBytes, 0);
      const data = [Buffer.from('first'), Buffer.alloc(0), Buffer.from('third')];
      const positions = await wal.append(data);
      assert.deepEqual(positions, [
        { segment: 0, offset: SEGMENT_HEADER_BYTES },
        { segment: 0, offset: SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 5 },
        { segment: 0, offset: SEGMENT_HEADER_BYTES + 2 * FRAME_HEADER_BYTES + 5 },
      ]);
      assert.deepEqual(await wal.append([]), []);
      await wal.close();

      const reopened = await reopen(dir);
      assert.deepEqual(
        reopened.records.map((r) => r.data),
        data,
      );
      assert.deepEqual(
        reopened.records.map((r) => r.position),
        positions,
      );
      assert.equal(reopened.truncatedBytes, 0);
    });
  });

  it('keeps many records from many appends in append order', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir });
      const expected: Buffer[] = [];
      for (let batch = 0; batch < 40; batch++) {
        const data = Array.from({ length: 50 }, (_, i) => record(batch * 50 + i, 20 + ((batch * 50 + i) % 90)));
        expected.push(...data);
        await wal.append(data);
      }
      await wal.close();
      const { records } = await reopen(dir);
      assert.equal(records.length, 2000);
      assert.deepEqual(
        records.map((r) => r.data),
        expected,
      );
    });
  });

  it('creates a missing nested folder', async () => {
    await withTempDir(async (root) => {
      const dir = join(root, 'a', 'b', 'wal');
      const { wal } = await WriteAheadLog.open({ dir });
      await wal.append([Buffer.from('x')]);
      await wal.close();
      assert.deepEqual(await segmentFiles(dir), [segmentFileName(0)]);
    });
  });

  it('continues after the last record when reopened', async () => {
    await withTempDir(async (dir) => {
      const first = await WriteAheadLog.open({ dir });
      const [a] = await first.wal.append([record(1)]);
      await first.wal.close();

      const second = await WriteAheadLog.open({ dir });
      assert.equal(second.records.length, 1);
      const [b] = await second.wal.append([record(2)]);
      await second.wal.close();
      assert.deepEqual(b, { segment: 0, offset: (a?.offset ?? 0) + FRAME_HEADER_BYTES + 32 });

      const third = await reopen(dir);
      assert.deepEqual(
        third.records.map((r) => r.data),
        [record(1), record(2)],
      );
    });
  });

  it('rejects invalid options with a message naming the setting', async () => {
    await withTempDir(async (dir) => {
      await assert.rejects(WriteAheadLog.open({ dir, segmentBytes: 10 }), /WalOptions\.segmentBytes must be an integer/);
      await assert.rejects(WriteAheadLog.open({ dir, maxRecordBytes: 1.5 }), /WalOptions\.maxRecordBytes/);
      await assert.rejects(WriteAheadLog.open({ dir: '' }), /WalOptions\.dir/);
      await assert.rejects(WriteAheadLog.open({ dir, preallocateBytes: -1 }), /WalOptions\.preallocateBytes must be an integer from 0/);
    });
  });

  it('removes a segment left half-created by a crash', async () => {
    await withTempDir(async (dir) => {
      await reopen(dir);
      await writeFile(join(dir, `${segmentFileName(1)}.tmp`), Buffer.from('CONC'));
      const { wal, records } = await WriteAheadLog.open({ dir });
      await wal.close();
      assert.deepEqual(records, []);
      assert.deepEqual(await readdir(dir), [segmentFileName(0)]);
    });
  });
});

describe('WriteAheadLog segments', () => {
  const segmentBytes = 1024;
  const payloadBytes = 200;
  const perSegment = Math.floor((segmentBytes - SEGMENT_HEADER_BYTES) / (FRAME_HEADER_BYTES + payloadBytes));

  it('rolls to a new segment before a record would cross segmentBytes', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir, segmentBytes });
      const data = Array.from({ length: 20 }, (_, i) => record(i, payloadBytes));
      // Half one call (rolling inside a batch), half one call per record.
      const positions: WalPosition[] = [...(await wal.append(data.slice(0, 10)))];
      for (const item of data.slice(10)) positions.push(...(await wal.append([item])));
      assert.equal(wal.stats().activeSegment, Math.ceil(20 / perSegment) - 1);
      await wal.close();

      positions.forEach((position, i) => {
        assert.equal(position.segment, Math.floor(i / perSegment), `segment of record ${i}`);
        const slot = i % perSegment;
        assert.equal(position.offset, SEGMENT_HEADER_BYTES + slot * (FRAME_HEADER_BYTES + payloadBytes));
      });
      const files = await segmentFiles(dir);
      assert.deepEqual(
        files,
        Array.from({ length: Math.ceil(20 / perSegment) }, (_, i) => segmentFileName(i)),
      );
      for (const file of files) {
        assert.ok((await stat(join(dir, file))).size <= segmentBytes, `${file} is within segmentBytes`);
      }

      const { records } = await reopen(dir, { segmentBytes });
      assert.deepEqual(
        records.map((r) => r.data),
        data,
      );
      assert.deepEqual(
        records.map((r) => r.position),
        positions,
      );
    });
  });

  it('gives a record larger than segmentBytes a segment of its own', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir, segmentBytes });
      const big = record(1, 3000);
      const positions = await wal.append([record(0, 10), big, record(2, 10)]);
      await wal.close();
      assert.deepEqual(
        positions.map((p) => p.segment),
        [0, 1, 2],
      );
      const { records } = await reopen(dir, { segmentBytes });
      assert.deepEqual(records[1]?.data, big);
    });
  });

  it('drops whole segments before a position, never the active one', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir, segmentBytes });
      const data = Array.from({ length: 4 * perSegment + 1 }, (_, i) => record(i, payloadBytes));
      const positions = await wal.append(data);
      assert.equal(wal.stats().activeSegment, 4);

      const keepFrom = positions[2 * perSegment + 1];
      assert.ok(keepFrom);
      assert.equal(await wal.dropSegmentsBefore(keepFrom), 2);
      assert.equal(await wal.dropSegmentsBefore(keepFrom), 0);
      assert.deepEqual(await segmentFiles(dir), [2, 3, 4].map(segmentFileName));

      assert.equal(await wal.dropSegmentsBefore({ segment: 1000, offset: 0 }), 2);
      assert.deepEqual(await segmentFiles(dir), [segmentFileName(4)]);
      assert.equal(wal.stats().segmentCount, 1);
      await assert.rejects(wal.dropSegmentsBefore({ segment: -1, offset: 0 }), /non-negative integer/);

      const [next] = await wal.append([record(99, payloadBytes)]);
      await wal.close();
      const { records } = await reopen(dir, { segmentBytes });
      assert.deepEqual(
        records.map((r) => r.data),
        [...data.slice(4 * perSegment), record(99, payloadBytes)],
      );
      assert.equal(records[0]?.position.segment, 4);
      assert.deepEqual(records.at(-1)?.position, next);
    });
  });
});

describe('WriteAheadLog group commit', () => {
  it('batches appends made during an in-flight sync into one write and sync, in call order', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir });
      const before = wal.stats();
      const concurrent = 64;
      // The first call starts a write + fdatasync at once; the rest arrive while it is in flight.
      const calls = Array.from({ length: concurrent }, (_, i) => wal.append([record(2 * i), record(2 * i + 1)]));
      const results = await Promise.all(calls);
      const after = wal.stats();

      assert.equal(after.batches - before.batches, 2);
      assert.equal(after.syncs - before.syncs, 2);
      assert.ok(after.syncs - before.syncs < concurrent);
      assert.equal(after.records - before.records, 2 * concurrent);

      const flat = results.flat();
      for (let i = 1; i < flat.length; i++) {
        const previous = flat[i - 1];
        const current = flat[i];
        assert.ok(previous && current && current.offset > previous.offset, `position ${i} follows position ${i - 1}`);
      }
      await wal.close();

      const { records } = await reopen(dir);
      assert.deepEqual(
        records.map((r) => r.data),
        Array.from({ length: 2 * concurrent }, (_, i) => record(i)),
      );
      assert.deepEqual(
        records.map((r) => r.position),
        flat,
      );
    });
  });

  it('does not sync batches when sync is off, yet close makes them durable', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir, sync: false });
      await Promise.all(Array.from({ length: 10 }, (_, i) => wal.append([record(i)])));
      assert.equal(wal.stats().syncs, 0);
      await wal.close();
      assert.equal(wal.stats().syncs, 1);
      const { records } = await reopen(dir);
      assert.equal(records.length, 10);
    });
  });
});

describe('WriteAheadLog limits and closing', () => {
  it('refuses a record over maxRecordBytes, writes nothing of that call, and stays usable', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir, maxRecordBytes: 100 });
      await assert.rejects(wal.append([record(0, 10), Buffer.alloc(101, 1)]), (error: Error) => {
        assert.ok(error instanceof RangeError);
        assert.match(error.message, /WAL record 1 is 101 bytes, over the maxRecordBytes limit of 100/);
        return true;
      });
      await wal.append([Buffer.alloc(100, 2)]);
      await wal.close();
      const { records } = await reopen(dir);
      assert.deepEqual(
        records.map((r) => r.data),
        [Buffer.alloc(100, 2)],
      );
    });
  });

  it('finishes pending appends on close, then rejects appends and drops', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir });
      const pending = [wal.append([record(0)]), wal.append([record(1)]), wal.append([record(2)])];
      const closed = wal.close();
      await assert.rejects(wal.append([record(3)]), /WAL is closed/);
      await closed;
      assert.equal((await Promise.all(pending)).length, 3);
      await wal.close(); // a second close is harmless
      await assert.rejects(wal.append([record(4)]), /WAL is closed/);
      await assert.rejects(wal.dropSegmentsBefore({ segment: 1, offset: 0 }), /WAL is closed/);

      const { records } = await reopen(dir);
      assert.deepEqual(
        records.map((r) => r.data),
        [record(0), record(1), record(2)],
      );
    });
  });

  it('refuses every append after a failed write, until the log is reopened', async () => {
    await withTempDir(async (dir) => {
      const segmentBytes = SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + 32);
      const { wal } = await WriteAheadLog.open({ dir, segmentBytes });
      await wal.append([record(0), record(1)]);
      // A folder where the next segment's temporary file must go makes the roll fail.
      const blocker = join(dir, `${segmentFileName(1)}.tmp`);
      await mkdir(blocker);
      await assert.rejects(wal.append([record(2)]), /WAL write failed, so the log accepts no more appends; reopen it/);
      await assert.rejects(wal.append([record(3)]), /WAL write failed/);
      await wal.close();

      await rm(blocker, { recursive: true });
      const reopened = await WriteAheadLog.open({ dir, segmentBytes });
      assert.deepEqual(
        reopened.records.map((r) => r.data),
        [record(0), record(1)],
      );
      assert.deepEqual(await reopened.wal.append([record(2)]), [{ segment: 1, offset: SEGMENT_HEADER_BYTES }]);
      await reopened.wal.close();
    });
  });

  it('does not mistake an unrelated file in the folder for a segment', async () => {
    await withTempDir(async (dir) => {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'snapshot'), 'not a segment');
      const { wal, records } = await WriteAheadLog.open({ dir });
      await wal.close();
      assert.deepEqual(records, []);
    });
  });
});

describe('WriteAheadLog preallocation', () => {
  const preallocateBytes = 4096;

  it('extends the active segment with zeros ahead of the records, and a crash leaves them as free space', async () => {
    await withTempDir(async (root) => {
      const dir = join(root, 'wal');
      const { wal } = await WriteAheadLog.open({ dir, preallocateBytes });
      const first = [record(0, 100), record(1, 100)];
      await wal.append(first);
      const path = join(dir, segmentFileName(0));
      const used = SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + 100);
      const bytes = await readFile(path);
      assert.equal(bytes.length, used + preallocateBytes);
      assert.ok(bytes.subarray(used).every((b) => b === 0), 'the space after the records is zeros');

      // The next batch fits in the preallocated space: the file keeps its length.
      await wal.append([record(2, 100)]);
      assert.equal((await stat(path)).size, used + preallocateBytes);

      // A crash (the folder copied while the log is open): every record is back, nothing is
      // reported as torn, and appends continue right after the last record.
      const crashed = join(root, 'crashed');
      await cp(dir, crashed, { recursive: true });
      await wal.close();
      const recovered = await WriteAheadLog.open({ dir: crashed, preallocateBytes });
      assert.deepEqual(
        recovered.records.map((r) => r.data),
        [...first, record(2, 100)],
      );
      assert.equal(recovered.truncatedBytes, 0);
      const [position] = await recovered.wal.append([record(3, 100)]);
      assert.deepEqual(position, { segment: 0, offset: used + FRAME_HEADER_BYTES + 100 });
      await recovered.wal.close();
      assert.equal((await reopen(crashed)).records.length, 4);
    });
  });

  it('grows by another step once the records reach the end of the preallocated space', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir, preallocateBytes });
      const path = join(dir, segmentFileName(0));
      let used = SEGMENT_HEADER_BYTES;
      for (let i = 0; i < 12; i++) {
        await wal.append([record(i, 1000)]);
        used += FRAME_HEADER_BYTES + 1000;
        const size = (await stat(path)).size;
        assert.ok(size > used && size <= used + preallocateBytes, `after record ${i}: file ${size} bytes, records end at ${used}`);
      }
      await wal.close();
      assert.equal((await stat(path)).size, used, 'close trims the zeros');
      assert.equal((await reopen(dir)).records.length, 12);
    });
  });

  it('seals a segment without its zeros, never preallocating past segmentBytes', async () => {
    await withTempDir(async (dir) => {
      const segmentBytes = SEGMENT_HEADER_BYTES + 3 * (FRAME_HEADER_BYTES + 100);
      const { wal } = await WriteAheadLog.open({ dir, segmentBytes, preallocateBytes });
      await wal.append([record(0, 100)]);
      assert.equal((await stat(join(dir, segmentFileName(0)))).size, segmentBytes);
      for (let i = 1; i < 5; i++) await wal.append([record(i, 100)]);
      // Segment 0 is sealed with exactly its three records; a zero tail there would be corruption.
      assert.equal((await stat(join(dir, segmentFileName(0)))).size, segmentBytes);
      assert.deepEqual(await segmentFiles(dir), [segmentFileName(0), segmentFileName(1)]);
      await wal.close();
      assert.equal((await reopen(dir, { segmentBytes })).records.length, 5);
    });
  });

  it('writes the records only when preallocateBytes is 0', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir, preallocateBytes: 0 });
      await wal.append([record(0, 100)]);
      assert.equal((await stat(join(dir, segmentFileName(0)))).size, SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 100);
      await wal.close();
    });
  });

  it('still cuts a torn record that a zero tail follows, and reports it', async () => {
    await withTempDir(async (dir) => {
      const { wal } = await WriteAheadLog.open({ dir, preallocateBytes });
      await wal.append([record(0, 100), record(1, 100)]);
      const path = join(dir, segmentFileName(0));
      const crashed = await readFile(path);
      await wal.close();
      // The second record torn: its last 10 bytes lost, the preallocated zeros after it intact.
      const secondEnd = SEGMENT_HEADER_BYTES + 2 * (FRAME_HEADER_BYTES + 100);
      crashed.fill(0, secondEnd - 10, secondEnd);
      await writeFile(path, crashed);
      const recovered = await WriteAheadLog.open({ dir, preallocateBytes });
      assert.equal(recovered.records.length, 1);
      assert.equal(recovered.truncatedBytes, crashed.length - (SEGMENT_HEADER_BYTES + FRAME_HEADER_BYTES + 100));
      await recovered.wal.close();
    });
  });
});
