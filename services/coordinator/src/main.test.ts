// The coordinator as a process: what an operator and the local launcher rely on.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { credentials, type ServiceError as GrpcError } from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterClient, MemberRole, type GetRingResponse, type StatusResponse } from '@concord/proto/cluster';
import { eventually, freePorts } from './testing.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
/** A clean environment: no CONCORD_* or OTEL_* settings leak in from the test's own. */
const ENV = { PATH: process.env['PATH'] ?? '' };

function run(args: string[]) {
  const child = spawn(process.execPath, [MAIN, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => ({ code: code as number | null, stdout, stderr }));
  return { child, exited };
}

describe('coordinator main', () => {
  it('--help lists every setting and exits 0', async () => {
    const { code, stdout } = await run(['--help']).exited;
    assert.equal(code, 0);
    for (const flag of [
      '--listen',
      '--member-id',
      '--engine',
      '--peers',
      '--data-dir',
      '--groups',
      '--ring-vnodes',
      '--ring-epoch',
      '--tick-ms',
      '--election-ticks',
      '--heartbeat-ticks',
      '--sync',
      '--snapshot-every',
      '--shard-timeout',
      '--log-level',
    ]) {
      assert.match(stdout, new RegExp(flag));
    }
    assert.match(stdout, /CONCORD_GROUPS/);
    assert.match(stdout, /CONCORD_PEERS/);
  });

  it('exits 2 naming the setting when a setting is bad', async () => {
    const missing = await run([]).exited;
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--peers: required with --engine raft/);
    const noGroups = await run(['--engine', 'config']).exited;
    assert.equal(noGroups.code, 2);
    assert.match(noGroups.stderr, /--groups: required with --engine config/);
    const malformed = await run(['--engine', 'config', '--groups', 'g1=nowhere']).exited;
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /--groups: group g1: replica address must be host:port/);
  });

  it('config engine: logs "serving" with its address, serves, and shuts down on SIGTERM', async () => {
    const { child, exited } = run(['--engine', 'config', '--listen', '127.0.0.1:0', '--groups', 'g1=127.0.0.1:1,g2=127.0.0.1:2']);
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    try {
      let address: string | undefined;
      for await (const line of createInterface({ input: child.stdout })) {
        const entry = JSON.parse(line) as { msg?: string; address?: string };
        if (entry.msg === 'serving') {
          address = entry.address;
          break;
        }
      }
      assert.ok(address, 'a "serving" line with an address');
      const cluster = new ClusterClient(address, credentials.createInsecure());
      const ring = await new Promise<GetRingResponse>((resolve, reject) =>
        cluster.getRing({}, (error, response) => (error === null ? resolve(response) : reject(error))),
      );
      cluster.close();
      assert.deepEqual(ring.groups.map((group) => group.groupId), ['g1', 'g2']);
      child.kill('SIGTERM');
      const { code } = await exited;
      assert.equal(code, 0);
    } finally {
      clearTimeout(timer);
    }
  });

  it('raft engine: a meta group of one elects itself, bootstraps the ring from --groups, and shuts down on SIGTERM', async () => {
    const [port] = await freePorts(1);
    const dataDir = await mkdtemp(join(tmpdir(), 'concord-coordinator-main-'));
    const address = `127.0.0.1:${port!}`;
    const { child, exited } = run([
      '--member-id', 'coordinator-0',
      '--listen', address,
      '--peers', `coordinator-0=${address}`,
      '--data-dir', dataDir,
      '--groups', 'g1=127.0.0.1:1,g2=127.0.0.1:2',
      '--ring-epoch', '4',
      '--sync=false',
    ]);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const cluster = new ClusterClient(address, credentials.createInsecure());
    try {
      let serving: { address?: string; engine?: string; meta_peers?: string[] } | undefined;
      for await (const line of createInterface({ input: child.stdout })) {
        const entry = JSON.parse(line) as { msg?: string; address?: string; engine?: string; meta_peers?: string[] };
        if (entry.msg === 'serving') {
          serving = entry;
          break;
        }
      }
      assert.deepEqual(serving && [serving.address, serving.engine, serving.meta_peers], [address, 'raft', ['coordinator-0']]);
      const ring = await eventually('the ring of the bootstrapped meta group', () =>
        new Promise<GetRingResponse>((resolve, reject) => cluster.getRing({}, (error: GrpcError | null, response) => (error === null ? resolve(response) : reject(error)))),
      );
      assert.equal(ring.epoch, 4);
      assert.deepEqual(ring.groups.map((group) => group.groupId), ['g1', 'g2']);
      const status = await new Promise<StatusResponse>((resolve, reject) =>
        cluster.status({}, (error: GrpcError | null, response) => (error === null ? resolve(response) : reject(error))),
      );
      assert.deepEqual(status.meta?.members.map((member) => [member.memberId, member.role, member.engine]), [['coordinator-0', MemberRole.MEMBER_ROLE_LEADER, 'raft']]);
      child.kill('SIGTERM');
      const { code } = await exited;
      assert.equal(code, 0);
    } finally {
      clearTimeout(timer);
      cluster.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
