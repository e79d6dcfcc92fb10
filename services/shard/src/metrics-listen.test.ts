// --metrics-listen: the shard serves Prometheus metrics only when asked to, on the address given.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { OptionsError, createLogger, processMetrics } from '@concord/runtime';
import { compileShardOptions } from './options.js';
import { startShardNode } from './shard-node.js';
import { Shard, freePorts, keysOwnedBy, testShardOptions } from './testing.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const STARTUP_TIMEOUT_MS = 15_000;
const BASE = ['--group-id', 'g1', '--ring-groups', 'g1', '--data-dir', '/var/lib/concord', '--engine', 'single'];

function fetchText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    }).on('error', reject);
  });
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

describe('shard --metrics-listen', () => {
  it('is empty by default, which serves no metrics', () => {
    assert.equal(compileShardOptions({ argv: BASE, env: {} }).metricsListen, undefined);
    assert.equal(compileShardOptions({ argv: BASE, env: { CONCORD_METRICS_LISTEN: '' } }).metricsListen, undefined);
  });

  it('reads host:port from the flag or CONCORD_METRICS_LISTEN, IPv6 in brackets', () => {
    assert.deepEqual(compileShardOptions({ argv: [...BASE, '--metrics-listen', '127.0.0.1:7201'], env: {} }).metricsListen, {
      host: '127.0.0.1',
      port: 7201,
    });
    assert.deepEqual(compileShardOptions({ argv: BASE, env: { CONCORD_METRICS_LISTEN: '[::1]:0' } }).metricsListen, { host: '::1', port: 0 });
  });

  it('refuses a malformed address and the gRPC address, naming the setting', () => {
    assert.throws(
      () => compileShardOptions({ argv: [...BASE, '--metrics-listen', '7201'], env: {} }),
      (error: unknown) => error instanceof OptionsError && /^--metrics-listen: must be empty, or host:port/.test(error.message),
    );
    assert.throws(
      () => compileShardOptions({ argv: BASE, env: { CONCORD_METRICS_LISTEN: '127.0.0.1:7101', CONCORD_LISTEN: '127.0.0.1:7101' } }),
      (error: unknown) => error instanceof OptionsError && /^CONCORD_METRICS_LISTEN \(for --metrics-listen\): must differ from --listen/.test(error.message),
    );
  });

  it('starts no metrics server when the setting is empty', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'concord-shard-metrics-'));
    const lines: string[] = [];
    const logger = createLogger({ service: 'shard-test', level: 'info', destination: { write: (line: string) => void lines.push(line) } });
    try {
      const node = await startShardNode(testShardOptions({ dataDir, engine: 'single' }), logger);
      try {
        assert.equal(node.metricsAddress, undefined);
        assert.ok(!lines.some((line) => line.includes('serving metrics')), lines.join(''));
      } finally {
        await node.stop();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("exports the state machine's keys and record bytes, read at each scrape, until the replica stops", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'concord-shard-metrics-'));
    const logger = createLogger({ service: 'shard-test', level: 'silent' });
    const sample = async (): Promise<{ keys?: number; live?: number; dead?: number }> => {
      const body = await processMetrics().exposition();
      const read = (pattern: RegExp): number | undefined => {
        const match = pattern.exec(body);
        return match === null ? undefined : Number(match[1]);
      };
      return {
        keys: read(/^concord_shard_store_keys\{group="g1",member="g1-0"\} (\d+)$/m),
        live: read(/^concord_shard_store_bytes\{group="g1",member="g1-0",kind="live"\} (\d+)$/m),
        dead: read(/^concord_shard_store_bytes\{group="g1",member="g1-0",kind="dead"\} (\d+)$/m),
      };
    };
    try {
      const node = await startShardNode(testShardOptions({ dataDir, engine: 'single' }), logger);
      const shard = new Shard(node.address);
      try {
        assert.deepEqual(await sample(), { keys: 0, live: 0, dead: 0 });
        // Records of 16 bytes of header, a key of 7 bytes and the value (off-heap-store.ts).
        const keys = keysOwnedBy('g1', 'm/', 3);
        for (const key of keys) await shard.put({ key, value: Buffer.alloc(1000, 1) });
        assert.deepEqual(await sample(), { keys: 3, live: 3 * 1023, dead: 0 });
        await shard.put({ key: keys[0]!, value: Buffer.alloc(10, 2) });
        await shard.delete({ key: keys[1]! });
        assert.deepEqual(await sample(), { keys: 2, live: 1023 + 33, dead: 2 * 1023 });
      } finally {
        shard.close();
        await node.stop();
      }
      assert.deepEqual(await sample(), { keys: undefined, live: undefined, dead: undefined });
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('a shard process started with --metrics-listen serves its Raft and gRPC metrics until it stops', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'concord-shard-metrics-'));
    try {
      const [port, metricsPort] = (await freePorts(2)) as [number, number];
      const address = `127.0.0.1:${port}`;
      const metricsAddress = `127.0.0.1:${metricsPort}`;
      const args = ['--group-id', 'g1', '--member-id', 'g1-0', '--ring-groups', 'g1', '--sync=false', '--listen', address, '--peers', `g1-0=${address}`];
      args.push('--tick-ms', '10', '--metrics-listen', metricsAddress);
      // Only what the shard needs: an inherited CONCORD_* or OTEL_* variable must not change the test.
      const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env['PATH'] ?? '', CONCORD_DATA_DIR: dataDir }, stdio: 'pipe' });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      try {
        const serving = await servingLine(child);
        assert.equal(serving['metrics_address'], metricsAddress);

        // A group of one elects itself: wait until the metrics say so.
        let body = '';
        for (let tries = 0; tries < 500 && !/^concord_raft_is_leader\{group="g1",member="g1-0"\} 1$/m.test(body); tries++) {
          if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 20));
          body = (await fetchText(`http://${metricsAddress}/metrics`)).body;
        }
        assert.match(body, /^concord_raft_is_leader\{group="g1",member="g1-0"\} 1$/m);
        const term = /^concord_raft_term\{group="g1",member="g1-0"\} (\d+)$/m.exec(body);
        assert.ok(term, body);
        assert.ok(Number(term[1]) >= 1);
        assert.match(body, /^# TYPE concord_raft_proposal_seconds histogram$/m);
        assert.match(body, /^# TYPE concord_grpc_server_handled_total counter$/m);
        assert.match(body, /^process_cpu_user_seconds_total /m);
        assert.equal((await fetchText(`http://${metricsAddress}/`)).status, 404);
      } finally {
        child.kill('SIGTERM');
      }
      assert.equal(await exited, 0, stderr);
      await assert.rejects(fetchText(`http://${metricsAddress}/metrics`), /ECONNREFUSED/);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
