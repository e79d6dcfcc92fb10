// One writer per log folder. Two processes appending to the same write-ahead log would interleave
// records and corrupt it for both (etcd guards its WAL with flock for the same reason). Node has no
// flock, so the folder holds a LOCK file naming the process that writes it:
//
//   * created with O_EXCL, so of two processes starting at once exactly one gets it;
//   * a LOCK whose process no longer runs (a SIGKILL, a crash, a reboot) is stale and taken over;
//     "runs" means the pid exists and, where /proc tells, is a Node process, so a pid reused by an
//     unrelated program after a reboot does not lock the folder forever;
//   * a LOCK naming this very process is accepted: a process may open its own log again (tests
//     read a live log to simulate a crash); only other processes are kept out;
//   * removed on close.
//
// A folder on a network file system shared by two hosts is not protected: each host sees only its
// own pids.

import { readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hasErrorCode } from './fs-durability.js';

export const LOCK_FILE_NAME = 'LOCK';

export class DirectoryInUseError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(
      `${dir} is in use by process ${pid} (${join(dir, LOCK_FILE_NAME)}): two processes writing one log would corrupt it. ` +
        `Stop that process first; if no Concord process uses this folder, remove the LOCK file.`,
    );
    this.name = 'DirectoryInUseError';
  }
}

/** Whether `pid` is a running process that could be a Concord role (a Node process, where /proc tells). */
async function runsNode(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    if (!hasErrorCode(error, 'EPERM')) return false;
  }
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'latin1');
    return /node|concord/i.test(cmdline);
  } catch {
    return true; // no /proc (not Linux), or not readable: assume it may be one
  }
}

/** How many logs of this process hold each LOCK: the file goes with the last of them. */
const holdersHere = new Map<string, number>();

/**
 * Takes the folder's LOCK for this process; resolves to the function that releases it. Throws
 * DirectoryInUseError when another running process holds it.
 */
export async function lockDirectory(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE_NAME);
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    const left = (holdersHere.get(path) ?? 1) - 1;
    if (left > 0) {
      holdersHere.set(path, left);
      return;
    }
    holdersHere.delete(path);
    const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    if (holder === process.pid) await unlink(path).catch(() => undefined);
  };
  const held = (): (() => Promise<void>) => {
    holdersHere.set(path, (holdersHere.get(path) ?? 0) + 1);
    return release;
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx' });
      return held();
    } catch (error) {
      if (!hasErrorCode(error, 'EEXIST')) throw error;
    }
    const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
    if (holder === process.pid) return held();
    if (Number.isSafeInteger(holder) && holder > 0 && (await runsNode(holder))) throw new DirectoryInUseError(dir, holder);
    // Stale (or unreadable, half-written by a crash): remove it and race for it again.
    await unlink(path).catch((error: unknown) => {
      if (!hasErrorCode(error, 'ENOENT')) throw error;
    });
  }
  throw new Error(`could not take ${path}: other processes keep creating it`);
}
