// Small file-system helpers shared by the WAL and snapshots.

import { open, type FileHandle } from 'node:fs/promises';

/**
 * Makes the creation, rename or removal of entries in `dir` durable. On Linux a new file's data
 * can be on disk while its directory entry is not, so after a crash the file is simply absent;
 * fsync on the directory closes that gap.
 */
export async function fsyncDirectory(dir: string): Promise<void> {
  // Windows cannot open a directory for fsync and makes renames durable on its own.
  if (process.platform === 'win32') return;
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Whether `error` is a Node system error with the given code (ENOENT, EEXIST…). */
export function hasErrorCode(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

/** Writes all of `bytes` at `position`, continuing after short writes. */
export async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, position + written);
    // A regular file never accepts zero bytes without an error; the check keeps the loop bounded anyway.
    if (bytesWritten <= 0) throw new Error(`write made no progress at offset ${position + written}`);
    written += bytesWritten;
  }
}
