import assert from 'node:assert/strict';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { WalCorruptionError, WriteAheadLog } from './wal.js';
import { FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES, segmentFileName } from './wal-format.js';
import { nonZeroBytes, seededRandom, withTempDir } from './testing.js';

const PAYLOAD_BYTES = 200;
const RECORD_BYTES = FRAME_HEADER_BYTES + PAYLOAD_BYTES;

/** Payloads have no zero byte, so overwriting any of their bytes with zeros always changes them. */
function payload(i: number): Buffer {
  return nonZeroBytes(PAYLOAD_BYTES, 1000 + i);
}

/** Writes `count` records through the WAL in one append and closes it. */
async function writeRecords(dir: string, count: number, segmentBytes?: number): Promise<void> {
  const { wal } = await WriteAheadLog.open({ dir, segmentBytes });
  await wal.append(Array.from({ length: count }, (_, i) => payload(i)));
  await wal.close();
}

async function openAndClose(dir: string) {
  const result = await WriteAheadLog.open({ dir, sync: false });
  await result.wal.close();
  return result;
}

/** Asserts that opening `dir` fails with WalCorruptionError at `offset` of `file`, and changes no file. */
async function assertCorrupt(dir: string, file: string, offset: number, reason: RegExp): Promise<void> {
  const path = join(dir, file);
  const sizeBefore = await stat(path).then(
    (s) => s.size,
    () => undefined,
  );
  await assert.rejects(WriteAheadLog.open({ dir }), (error: unknown) => {
    assert.ok(error instanceof WalCorruptionError, `expected WalCorruptionError, got ${String(error)}`);
    assert.equal(error.segmentFile, path);
    assert.equal(error.offset, offset);
    assert.ok(error.message.includes(path), 'the message names the file');
    assert.ok(error.message.includes(`offset ${offset}`), 'the message names the offset');
    assert.match(error.message, /restore this node's data from a replica or a backup/);
    assert.match(error.message, reason);
    return true;
  });
  const sizeAfter = await stat(path).then(
    (s) => s.size,
    () => undefined,
  );
  assert.equal(sizeAfter, sizeBefore, 'a corrupt log is left untouched');
}

type TailDamage = 'truncate' | 'zeros' | 'garbage';

function damageTail(pristine: Buffer, from: number, damage: TailDamage, seed: number): Buffer {
  if (damage === 'truncate') return pristine.subarray(0, from);
  const damaged = Buffer.from(pristine);
  const next = seededRandom(seed);
  for (let i = from; i < damaged.length; i++) {
    // XOR with a non-zero byte, so every garbage byte differs from the byte it replaces.
    damaged[i] = damage === 'zeros' ? 0 : (damaged[i] ?? 0) ^ (1 + Math.floor(next() * 255));
  }
  return damaged;
}

describe('WAL recovery from a torn last record', () => {
  const recordCount = 5;

  for (const damage of ['truncate', 'zeros', 'garbage'] as const) {
    const how = damage === 'truncate' ? 'cut at' : `overwritten with ${damage} from`;
    it(`recovers the complete records whatever byte the last record is ${how}`, async () => {
      await withTempDir(async (dir) => {
        await writeRecords(dir, recordCount);
        const path = join(dir, segmentFileName(0));
        const pristine = await readFile(path);
        const lastStart = SEGMENT_HEADER_BYTES + (recordCount - 1) * RECORD_BYTES;
        assert.equal(pristine.length, lastStart + RECORD_BYTES);

        // offset === RECORD_BYTES is the control: nothing is damaged.
        for (let offset = 0; offset <= RECORD_BYTES; offset++) {
          const intact = offset === RECORD_BYTES;
          const damaged = damageTail(pristine, lastStart + offset, damage, offset);
          await writeFile(path, damaged);

          const recovered = await WriteAheadLog.open({ dir, sync: false });
          const expected = intact ? recordCount : recordCount - 1;
          const context = `${damage} at offset ${offset} of the last record`;
          assert.equal(recovered.records.length, expected, context);
          recovered.records.forEach((r, i) => assert.deepEqual(r.data, payload(i), `${context}: record ${i}`));
          // A tail of zeros only reads as preallocated space: nothing is cut, so nothing is reported.
          const zeroTail = damage === 'zeros' && offset === 0;
          assert.equal(recovered.truncatedBytes, intact || zeroTail ? 0 : damaged.length - lastStart, context);

          const extra = Buffer.from(`appended after ${damage} at ${offset}`);
          const [position] = await recovered.wal.append([extra]);
          assert.deepEqual(position, { segment: 0, offset: intact ? pristine.length : lastStart }, context);
          await recovered.wal.close();

          const reopened = await openAndClose(dir);
          assert.equal(reopened.truncatedBytes, 0, context);
          assert.equal(reopened.records.length, expected + 1, context);
          assert.deepEqual(reopened.records.at(-1)?.data, extra, context);
          assert.deepEqual(reopened.records.at(-2)?.data, payload(expected - 1), context);
        }
      });
    });
  }

  it('keeps a sealed segment and truncates only the torn tail of the last one', async () => {
    await withTempDir(async (dir) => {
      const segmentBytes = SEGMENT_HEADER_BYTES + 3 * RECORD_BYTES;
      await writeRecords(dir, 5, segmentBytes);
      const path = join(dir, segmentFileName(1));
      const bytes = await readFile(path);
      await writeFile(path, bytes.subarray(0, bytes.length - 7));
      const { records, truncatedBytes } = await openAndClose(dir);
      assert.equal(records.length, 4);
      assert.equal(truncatedBytes, RECORD_BYTES - 7);
    });
  });
});

describe('WAL corruption that a crash cannot explain', () => {
  it('refuses a flipped byte anywhere in an early record followed by valid records', async () => {
    await withTempDir(async (dir) => {
      await writeRecords(dir, 4);
      const file = segmentFileName(0);
      const path = join(dir, file);
      const pristine = await readFile(path);
      for (let i = 0; i < RECORD_BYTES; i++) {
        const damaged = Buffer.from(pristine);
        const at = SEGMENT_HEADER_BYTES + i;
        damaged[at] = (damaged[at] ?? 0) ^ 0x40;
        await writeFile(path, damaged);
        await assertCorrupt(dir, file, SEGMENT_HEADER_BYTES, /a valid record follows/);
      }
    });
  });

  it('refuses damage to the second-to-last record even when the last one is intact', async () => {
    await withTempDir(async (dir) => {
      await writeRecords(dir, 3);
      const file = segmentFileName(0);
      const path = join(dir, file);
      const bytes = await readFile(path);
      const victim = SEGMENT_HEADER_BYTES + RECORD_BYTES;
      bytes.fill(0, victim + 20, victim + 60);
      await writeFile(path, bytes);
      await assertCorrupt(dir, file, victim, /checksum mismatch, yet a valid record follows/);
    });
  });

  it('refuses any damage in a segment that is not the last, even at its very end', async () => {
    await withTempDir(async (dir) => {
      const segmentBytes = SEGMENT_HEADER_BYTES + 2 * RECORD_BYTES;
      await writeRecords(dir, 5, segmentBytes);
      const file = segmentFileName(1);
      const path = join(dir, file);
      const pristine = await readFile(path);

      await writeFile(path, pristine.subarray(0, pristine.length - 1));
      await assertCorrupt(dir, file, SEGMENT_HEADER_BYTES + RECORD_BYTES, /sealed segment/);

      const flipped = Buffer.from(pristine);
      flipped[pristine.length - 1] = (flipped[pristine.length - 1] ?? 0) ^ 1;
      await writeFile(path, flipped);
      await assertCorrupt(dir, file, SEGMENT_HEADER_BYTES + RECORD_BYTES, /checksum mismatch in a sealed segment/);
    });
  });

  it('refuses a missing segment between the first and the last', async () => {
    await withTempDir(async (dir) => {
      await writeRecords(dir, 5, SEGMENT_HEADER_BYTES + 2 * RECORD_BYTES);
      await rm(join(dir, segmentFileName(1)));
      await assertCorrupt(dir, segmentFileName(1), 0, /segment 1 is missing between 0 and 2/);
    });
  });

  it('refuses a damaged or misplaced segment header', async () => {
    await withTempDir(async (dir) => {
      await writeRecords(dir, 2);
      const file = segmentFileName(0);
      const path = join(dir, file);
      const pristine = await readFile(path);

      const badHeader = Buffer.from(pristine);
      badHeader[13] = (badHeader[13] ?? 0) ^ 1; // the salt
      await writeFile(path, badHeader);
      await assertCorrupt(dir, file, 0, /segment header checksum mismatch/);

      await writeFile(path, pristine.subarray(0, 5));
      await assertCorrupt(dir, file, 0, /shorter than the 28-byte segment header/);

      await rm(path);
      await writeFile(join(dir, segmentFileName(3)), pristine);
      await assertCorrupt(dir, segmentFileName(3), 0, /header says segment 0 but the file name says 3/);
    });
  });
});
