import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_SERVER_NODE_FLAGS, missingNodeFlags, serverNodeFlags } from './node-flags.js';

describe('server node flags', () => {
  it('are the default unless CONCORD_NODE_FLAGS replaces them; empty means none', () => {
    assert.deepEqual(serverNodeFlags({}), ['--initial-old-space-size=128']);
    assert.deepEqual(serverNodeFlags({ CONCORD_NODE_FLAGS: '' }), []);
    assert.deepEqual(serverNodeFlags({ CONCORD_NODE_FLAGS: '  --max-semi-space-size=8   --initial-old-space-size=256 ' }), [
      '--max-semi-space-size=8',
      '--initial-old-space-size=256',
    ]);
    assert.throws(() => serverNodeFlags({ CONCORD_NODE_FLAGS: '--a=1 initial' }), /CONCORD_NODE_FLAGS: "initial" is not a node flag/);
  });

  it('count as present when the command line sets the same name, in any spelling or value', () => {
    const wanted = ['--initial-old-space-size=128', '--max-semi-space-size=8'];
    assert.deepEqual(missingNodeFlags(wanted, []), wanted);
    assert.deepEqual(missingNodeFlags(wanted, ['--initial_old_space_size=64']), ['--max-semi-space-size=8']);
    assert.deepEqual(missingNodeFlags(wanted, ['--max-semi-space-size=4', '--initial-old-space-size=128']), []);
    assert.deepEqual(missingNodeFlags(wanted, ['--import', 'x.js', '--cpu-prof']), wanted);
  });
});

describe('a role run as the entry point', () => {
  /** Runs a script that calls runRoleAsEntryPoint and prints the node flags and pid it ran with. */
  async function runEntry(options: { env?: Record<string, string>; nodeArgs?: string[] } = {}) {
    const dir = await mkdtemp(join(tmpdir(), 'concord-node-flags-'));
    try {
      const script = join(dir, 'role.mjs');
      const runtime = new URL('./index.js', import.meta.url).href;
      await writeFile(
        script,
        `import { runRoleAsEntryPoint } from ${JSON.stringify(runtime)};
         runRoleAsEntryPoint(async () => console.log(JSON.stringify({ execArgv: process.execArgv, argv: process.argv.slice(2), pid: process.pid })), 'test');`,
      );
      const result = spawnSync(process.execPath, [...(options.nodeArgs ?? []), script, 'one', 'two'], {
        env: { PATH: process.env['PATH'] ?? '', ...options.env },
        encoding: 'utf8',
        timeout: 20_000,
      });
      const line = result.stdout.trim();
      return { status: result.status, pid: result.pid, stderr: result.stderr, report: line === '' ? undefined : (JSON.parse(line) as { execArgv: string[]; argv: string[]; pid: number }) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  it('restarts itself, same pid and arguments, with the flags it was started without', async () => {
    const { status, pid, report, stderr } = await runEntry({ nodeArgs: ['--stack-size=900'] });
    assert.equal(status, 0, stderr);
    assert.equal(report!.pid, pid);
    assert.deepEqual(report!.execArgv, [...DEFAULT_SERVER_NODE_FLAGS, '--stack-size=900']);
    assert.deepEqual(report!.argv, ['one', 'two']);
  });

  it('keeps a setting given by hand, and runs as it is with CONCORD_NODE_FLAGS empty', async () => {
    const byHand = await runEntry({ nodeArgs: ['--initial-old-space-size=64'] });
    assert.equal(byHand.status, 0, byHand.stderr);
    assert.deepEqual(byHand.report!.execArgv, ['--initial-old-space-size=64']);
    const none = await runEntry({ env: { CONCORD_NODE_FLAGS: '' } });
    assert.equal(none.status, 0, none.stderr);
    assert.deepEqual(none.report!.execArgv, []);
    const own = await runEntry({ env: { CONCORD_NODE_FLAGS: '--max-semi-space-size=4' } });
    assert.deepEqual(own.report!.execArgv, ['--max-semi-space-size=4']);
  });

  it('exits 2 naming CONCORD_NODE_FLAGS when it holds something other than flags', async () => {
    const { status, stderr, report } = await runEntry({ env: { CONCORD_NODE_FLAGS: 'initial-old-space-size=64' } });
    assert.equal(status, 2);
    assert.equal(report, undefined);
    assert.match(stderr, /concord test: CONCORD_NODE_FLAGS: "initial-old-space-size=64" is not a node flag/);
  });
});
