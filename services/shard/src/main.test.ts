// The shard role as a process: what the local launcher and the cross-process tests rely on.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { credentials } from '@grpc/grpc-js';
import { ShardClient, type ShardStatusResponse } from '@concord/proto/shard';
import { freePorts } from './testing.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const STARTUP_TIMEOUT_MS = 15_000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string> = {}): { child: ChildProcess; exited: Promise<Exit> } {
  // Only what the shard needs: an inherited CONCORD_* or OTEL_* variable must not change the test.
  const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: 'pipe' });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, exited };
}

async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/** Resolves with the first JSON log line whose msg is "serving". */
function servingLine(child: ChildProcess): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no "serving" line in time')), STARTUP_TIMEOUT_MS);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (parsed['msg'] === 'serving') {
        clearTimeout(timer);
        lines.close();
        resolve(parsed);
      }
    });
    child.on('close', () => {
      clearTimeout(timer);
      reject(new Error('the shard exited before serving'));
    });
  });
}

describe('shard main', () => {
  it('logs one "serving" line with its address, serves, and stops cleanly on SIGTERM', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'concord-shard-main-'));
    try {
      const { child, exited } = run(['--group-id', 'g1', '--ring-groups', 'g1,g2', '--sync=false', '--engine', 'single'], { CONCORD_DATA_DIR: dataDir });
      const serving = await servingLine(child);
      assert.equal(serving['group_id'], 'g1');
      assert.equal(serving['member_id'], 'g1-0');
      assert.equal(serving['engine'], 'single');
      // Started without them, it restarted itself (same pid) with the server's node flags.
      const commandLine = execFileSync('ps', ['-o', 'args=', '-p', String(child.pid)], { encoding: 'utf8' });
      assert.ok(commandLine.includes(`--initial-old-space-size=128 ${MAIN}`), commandLine);
      assert.match(String(serving['address']), /^127\.0\.0\.1:\d+$/);
      assert.notEqual(serving['address'], '127.0.0.1:0');

      const client = new ShardClient(String(serving['address']), credentials.createInsecure());
      const reported = await new Promise<ShardStatusResponse>((resolve, reject) =>
        client.status({}, (error, response) => (error ? reject(error) : resolve(response))),
      );
      client.close();
      assert.equal(reported.groupId, 'g1');
      assert.equal(reported.leaderAddress, serving['address']);

      child.kill('SIGTERM');
      const exit = await exited;
      assert.equal(exit.code, 0, exit.stderr);
      assert.equal(exit.stdout.split('\n').filter((line) => line.includes('"msg":"serving"')).length, 1);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('serves the consensus peer service beside Shard with the raft engine; a group of one elects itself', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'concord-shard-main-'));
    try {
      const port = await freePort();
      const address = `127.0.0.1:${port}`;
      const args = ['--group-id', 'g1', '--member-id', 'g1-0', '--ring-groups', 'g1', '--sync=false', '--listen', address, '--peers', `g1-0=${address}`, '--tick-ms', '10'];
      const { child, exited } = run(args, { CONCORD_DATA_DIR: dataDir });
      const serving = await servingLine(child);
      assert.equal(serving['address'], address);
      assert.equal(serving['engine'], 'raft');

      const client = new ShardClient(address, credentials.createInsecure());
      const statusOf = (): Promise<ShardStatusResponse> =>
        new Promise((resolve, reject) => client.status({}, (error, response) => (error ? reject(error) : resolve(response))));
      let reported = await statusOf();
      for (let tries = 0; reported.role !== 'LEADER' && tries < 500; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        reported = await statusOf();
      }
      client.close();
      assert.deepEqual(
        { role: reported.role, engine: reported.engine, leaderAddress: reported.leaderAddress, memberId: reported.memberId },
        { role: 'LEADER', engine: 'raft', leaderAddress: address, memberId: 'g1-0' },
      );
      assert.ok(reported.term >= 1);

      child.kill('SIGTERM');
      const exit = await exited;
      assert.equal(exit.code, 0, exit.stderr);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('exits 2 naming --peers when the raft engine is not told its group', async () => {
    const exit = await run(['--group-id', 'g1', '--ring-groups', 'g1', '--data-dir', '/nonexistent', '--listen', '127.0.0.1:7101']).exited;
    assert.equal(exit.code, 2);
    assert.match(exit.stderr, /--peers: required with --engine raft/);
  });

  it('exits 2 naming the setting when a setting is bad', async () => {
    const { exited } = run(['--group-id', 'g1', '--ring-groups', 'g2', '--data-dir', '/nonexistent']);
    const exit = await exited;
    assert.equal(exit.code, 2);
    assert.match(exit.stderr, /--ring-groups: must include this replica's --group-id "g1"/);
    assert.equal(exit.stdout, '');
  });

  it('exits 2 when a required setting is missing', async () => {
    const exit = await run([]).exited;
    assert.equal(exit.code, 2);
    assert.match(exit.stderr, /missing required option --group-id \(or set CONCORD_GROUP_ID\)/);
  });

  it('prints every setting on --help', async () => {
    const exit = await run(['--help']).exited;
    assert.equal(exit.code, 0);
    assert.match(exit.stdout, /^Usage: concord serve shard/);
    assert.match(exit.stdout, /--snapshot-every <int>\n.*\n.*env CONCORD_SNAPSHOT_EVERY; default 10000/);
    assert.match(exit.stdout, /Node flags \(env CONCORD_NODE_FLAGS; default --initial-old-space-size=128\)/);
  });
});
