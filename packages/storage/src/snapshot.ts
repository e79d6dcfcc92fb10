// Atomic snapshot files.
//
// FORMAT, version 1 (integers little-endian, CRC-32 as in wal.ts):
//
//    0  magic    8 bytes, ASCII "CONCSNAP"
//    8  version  u32, 1
//   12  crc      u32, CRC-32 of the data
//   16  length   u64, byte count of the data
//   24  data
//
// A snapshot is replaced by writing `<path>.tmp`, syncing it, renaming it over `<path>` and syncing
// the folder. rename() is atomic, so after a crash `<path>` holds either the old snapshot or the new
// one, whole; the checksum catches what atomicity cannot (a disk that returns different bytes).
// A `.tmp` left by a crash is never read and is overwritten by the next write.
//
// Writers of one path must not overlap: they share the `.tmp` file. Concord writes a group's
// snapshot from that group's single driver.

import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { fsyncDirectory, hasErrorCode, writeFully } from './fs-durability.js';

const SNAPSHOT_MAGIC = Buffer.from('CONCSNAP', 'latin1');
const SNAPSHOT_FORMAT_VERSION = 1;
export const SNAPSHOT_HEADER_BYTES = 24;
export const SNAPSHOT_TEMP_SUFFIX = '.tmp';

export class SnapshotCorruptionError extends Error {
  constructor(message: string, readonly path: string) {
    super(message);
    this.name = 'SnapshotCorruptionError';
  }
}

function encodeSnapshotHeader(crc: number, length: number): Buffer {
  const header = Buffer.alloc(SNAPSHOT_HEADER_BYTES);
  SNAPSHOT_MAGIC.copy(header, 0);
  header.writeUInt32LE(SNAPSHOT_FORMAT_VERSION, 8);
  header.writeUInt32LE(crc, 12);
  header.writeBigUInt64LE(BigInt(length), 16);
  return header;
}

/** What writeSnapshotAtomic writes: bytes, or parts written one after the other as if concatenated. */
export type SnapshotData = Uint8Array | readonly Uint8Array[] | AsyncIterable<Uint8Array>;

/**
 * Writes `data` to `path` atomically: temp file, fsync, rename, fsync of the folder. `data` may come
 * in parts, written one after the other as if concatenated (which saves copying a large state), and
 * the parts may be produced as they are written (an AsyncIterable): each part is written before the
 * next is asked for, so a producer may hand out the same buffer again. The header (checksum, length)
 * is written last, at the front. Resolves to the number of data bytes written.
 */
export async function writeSnapshotAtomic(path: string, data: SnapshotData): Promise<number> {
  const parts: Iterable<Uint8Array> | AsyncIterable<Uint8Array> = data instanceof Uint8Array ? [data] : data;
  const tempPath = path + SNAPSHOT_TEMP_SUFFIX;
  let renamed = false;
  let length = 0;
  try {
    const handle = await open(tempPath, 'w');
    try {
      let crc = 0;
      for await (const part of parts) {
        if (!(part instanceof Uint8Array)) throw new TypeError('writeSnapshotAtomic takes Buffers (one, a list, or an async iterable of them)');
        crc = crc32(part, crc);
        await writeFully(handle, part, SNAPSHOT_HEADER_BYTES + length);
        length += part.byteLength;
      }
      await writeFully(handle, encodeSnapshotHeader(crc, length), 0);
      // The data must be durable before the rename is: otherwise a crash could leave `path`
      // naming a file whose contents never reached the disk.
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tempPath, path);
    renamed = true;
    await fsyncDirectory(dirname(path));
  } catch (error) {
    if (!renamed) await unlink(tempPath).catch(() => undefined);
    throw error;
  }
  return length;
}

/**
 * Reads a snapshot written by writeSnapshotAtomic; undefined when none exists; throws
 * SnapshotCorruptionError on a bad checksum, length or header.
 */
export async function readSnapshot(path: string): Promise<Buffer | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    if (hasErrorCode(error, 'ENOENT')) return undefined;
    throw error;
  }
  const corrupt = (reason: string): SnapshotCorruptionError =>
    new SnapshotCorruptionError(
      // Not "delete it and replay the log": the log segments it covers may already be gone.
      `snapshot ${path} is corrupt: ${reason}. Restore this node's data from a replica or a backup.`,
      path,
    );
  if (bytes.length < SNAPSHOT_HEADER_BYTES) {
    throw corrupt(`the file is ${bytes.length} bytes, shorter than the ${SNAPSHOT_HEADER_BYTES}-byte header`);
  }
  if (!bytes.subarray(0, SNAPSHOT_MAGIC.length).equals(SNAPSHOT_MAGIC)) throw corrupt('bad magic, not a snapshot file');
  const version = bytes.readUInt32LE(8);
  if (version !== SNAPSHOT_FORMAT_VERSION) {
    throw corrupt(`unknown format version ${version} (this build reads version ${SNAPSHOT_FORMAT_VERSION})`);
  }
  const length = bytes.readBigUInt64LE(16);
  const stored = bytes.length - SNAPSHOT_HEADER_BYTES;
  if (length !== BigInt(stored)) throw corrupt(`the header announces ${length} bytes of data but the file holds ${stored}`);
  const data = bytes.subarray(SNAPSHOT_HEADER_BYTES);
  if (crc32(data) !== bytes.readUInt32LE(12)) throw corrupt('checksum mismatch');
  return data;
}
