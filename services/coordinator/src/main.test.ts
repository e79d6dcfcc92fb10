// The coordinator as a process: what an operator and the local launcher rely on.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { ClusterClient, type GetRingResponse } from '@concord/proto/cluster';

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
    for (const flag of ['--listen', '--member-id', '--groups', '--ring-vnodes', '--ring-epoch', '--shard-timeout', '--log-level']) assert.match(stdout, new RegExp(flag));
    assert.match(stdout, /CONCORD_GROUPS/);
  });

  it('exits 2 naming the setting when a setting is bad', async () => {
    const missing = await run([]).exited;
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing required option --groups/);
    const malformed = await run(['--groups', 'g1=nowhere']).exited;
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /--groups: group g1: replica address must be host:port/);
  });

  it('logs "serving" with its address, serves, and shuts down on SIGTERM', async () => {
    const { child, exited } = run(['--listen', '127.0.0.1:0', '--groups', 'g1=127.0.0.1:1,g2=127.0.0.1:2']);
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
});
