import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DirectoryInUseError, LOCK_FILE_NAME } from './dir-lock.js';
import { WriteAheadLog } from './wal.js';

const WAL_MODULE = fileURLToPath(new URL('./wal.js', import.meta.url));

/** Another process that opens the log in `dir` and keeps it open until killed. */
async function holder(dir: string): Promise<ChildProcess> {
  const script = `import { WriteAheadLog } from ${JSON.stringify(WAL_MODULE)};
await WriteAheadLog.open({ dir: ${JSON.stringify(dir)}, sync: false });
process.stdout.write('open\\n');
setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  assert.equal(chunk.toString().trim(), 'open');
  return child;
}

describe('one writer per log folder (LOCK)', () => {
  let dir: string;
  const children: ChildProcess[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'concord-wal-lock-'));
  });

  afterEach(async () => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a log another running process has open, naming it; takes it over once that process was killed', async () => {
    const other = await holder(dir);
    children.push(other);
    await assert.rejects(WriteAheadLog.open({ dir, sync: false }), (error: unknown) => {
      assert.ok(error instanceof DirectoryInUseError);
      assert.equal(error.pid, other.pid);
      assert.match(error.message, /in use by process \d+ .*LOCK/);
      return true;
    });

    other.kill('SIGKILL');
    await once(other, 'exit');
    // Its LOCK is still there, naming a process that no longer runs: stale, taken over.
    assert.equal(Number.parseInt(await readFile(join(dir, LOCK_FILE_NAME), 'utf8'), 10), other.pid);
    const { wal } = await WriteAheadLog.open({ dir, sync: false });
    assert.equal(Number.parseInt(await readFile(join(dir, LOCK_FILE_NAME), 'utf8'), 10), process.pid);
    await wal.close();
    assert.equal(existsSync(join(dir, LOCK_FILE_NAME)), false, 'a clean close removes the LOCK');
  });

  it('ignores a LOCK that names no running process, or one that is garbage', async () => {
    await writeFile(join(dir, LOCK_FILE_NAME), '2147483646\n');
    const first = await WriteAheadLog.open({ dir, sync: false });
    await first.wal.close();
    await writeFile(join(dir, LOCK_FILE_NAME), 'not a pid');
    const second = await WriteAheadLog.open({ dir, sync: false });
    await second.wal.close();
  });

  it('lets this process open its own log again (a reader of a live log), and keeps others out meanwhile', async () => {
    const { wal } = await WriteAheadLog.open({ dir, sync: false });
    await wal.append([Buffer.from('one')]);
    const again = await WriteAheadLog.open({ dir, sync: false });
    assert.deepEqual(
      again.records.map((record) => record.data.toString()),
      ['one'],
    );
    await again.wal.close();
    assert.equal(existsSync(join(dir, LOCK_FILE_NAME)), true, 'the first log still holds the folder');
    const other = spawn(process.execPath, ['--input-type=module', '-e', `import { WriteAheadLog } from ${JSON.stringify(WAL_MODULE)};
try { await WriteAheadLog.open({ dir: ${JSON.stringify(dir)}, sync: false }); process.exit(0); } catch (e) { process.stdout.write(e.name); process.exit(3); }`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    other.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const [code] = (await once(other, 'exit')) as [number];
    assert.equal(code, 3);
    assert.equal(out, 'DirectoryInUseError');
    await wal.close();
    assert.equal(existsSync(join(dir, LOCK_FILE_NAME)), false);
  });
});
