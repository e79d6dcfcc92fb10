import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SNAPSHOT_HEADER_BYTES, SnapshotCorruptionError, readSnapshot, writeSnapshotAtomic } from './snapshot.js';
import { randomBytesSeeded, withTempDir } from './testing.js';

async function assertCorrupt(path: string, reason: RegExp): Promise<void> {
  await assert.rejects(readSnapshot(path), (error: unknown) => {
    assert.ok(error instanceof SnapshotCorruptionError, `expected SnapshotCorruptionError, got ${String(error)}`);
    assert.equal(error.path, path);
    assert.ok(error.message.includes(path));
    assert.match(error.message, reason);
    return true;
  });
}

describe('snapshots', () => {
  it('reads undefined when no snapshot exists', async () => {
    await withTempDir(async (dir) => {
      assert.equal(await readSnapshot(join(dir, 'snapshot')), undefined);
    });
  });

  it('round-trips empty, small and large data', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'snapshot');
      for (const data of [Buffer.alloc(0), Buffer.from('state'), randomBytesSeeded(1 << 20, 5)]) {
        await writeSnapshotAtomic(path, data);
        assert.deepEqual(await readSnapshot(path), data);
      }
      assert.deepEqual(await readdir(dir), ['snapshot'], 'no temporary file is left behind');
    });
  });

  it('replaces an existing snapshot whole', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'snapshot');
      await writeSnapshotAtomic(path, Buffer.alloc(5000, 1));
      await writeSnapshotAtomic(path, Buffer.from('shorter'));
      assert.deepEqual(await readSnapshot(path), Buffer.from('shorter'));
      assert.equal((await readFile(path)).length, SNAPSHOT_HEADER_BYTES + 7);
    });
  });

  it('ignores a temporary file left by a crash, and the next write replaces it', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'snapshot');
      await writeSnapshotAtomic(path, Buffer.from('committed'));
      await writeFile(`${path}.tmp`, 'half-written garbage');
      assert.deepEqual(await readSnapshot(path), Buffer.from('committed'));
      await writeSnapshotAtomic(path, Buffer.from('next'));
      assert.deepEqual(await readSnapshot(path), Buffer.from('next'));
      assert.deepEqual(await readdir(dir), ['snapshot']);
    });
  });

  it('detects damaged data, a wrong length and a foreign file', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'snapshot');
      await writeSnapshotAtomic(path, Buffer.from('some state machine bytes'));
      const pristine = await readFile(path);

      const flipped = Buffer.from(pristine);
      flipped[SNAPSHOT_HEADER_BYTES + 3] = (flipped[SNAPSHOT_HEADER_BYTES + 3] ?? 0) ^ 0x10;
      await writeFile(path, flipped);
      await assertCorrupt(path, /checksum mismatch/);

      await writeFile(path, pristine.subarray(0, pristine.length - 1));
      await assertCorrupt(path, /announces 24 bytes of data but the file holds 23/);

      await writeFile(path, Buffer.concat([pristine, Buffer.from('x')]));
      await assertCorrupt(path, /announces 24 bytes/);

      await writeFile(path, pristine.subarray(0, 10));
      await assertCorrupt(path, /shorter than the 24-byte header/);

      await writeFile(path, Buffer.concat([Buffer.from('NOTASNAP'), pristine.subarray(8)]));
      await assertCorrupt(path, /bad magic/);

      const newer = Buffer.from(pristine);
      newer.writeUInt32LE(2, 8);
      await writeFile(path, newer);
      await assertCorrupt(path, /unknown format version 2/);
    });
  });

  it('fails cleanly when the folder does not exist', async () => {
    await withTempDir(async (dir) => {
      await assert.rejects(writeSnapshotAtomic(join(dir, 'missing', 'snapshot'), Buffer.from('x')), { code: 'ENOENT' });
      assert.deepEqual(await readdir(dir), []);
    });
  });
});
