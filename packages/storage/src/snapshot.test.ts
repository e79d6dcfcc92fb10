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

  it('writes parts produced while it writes, one reused buffer included, and says how many bytes', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'snapshot');
      const expected = randomBytesSeeded(300_000, 9);
      // A producer that hands out the same buffer again for every part: each part must be written
      // before the next is asked for.
      async function* parts(): AsyncGenerator<Uint8Array> {
        const reused = Buffer.alloc(64 * 1024);
        for (let at = 0; at < expected.length; at += reused.length) {
          const size = expected.copy(reused, 0, at, Math.min(expected.length, at + reused.length));
          yield reused.subarray(0, size);
          reused.fill(0xee);
        }
      }
      assert.equal(await writeSnapshotAtomic(path, parts()), expected.length);
      assert.deepEqual(await readSnapshot(path), expected);
      assert.equal(await writeSnapshotAtomic(path, [Buffer.from('ab'), Buffer.from('cd')]), 4);
      assert.deepEqual(await readSnapshot(path), Buffer.from('abcd'));
      async function* notBytes(): AsyncGenerator<Uint8Array> {
        yield Buffer.from('fine');
        yield 'not bytes' as unknown as Uint8Array;
      }
      await assert.rejects(writeSnapshotAtomic(path, notBytes()), TypeError);
      assert.deepEqual(await readSnapshot(path), Buffer.from('abcd'), 'a failed write leaves the previous snapshot');
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
