// --metrics-listen: the coordinator serves Prometheus metrics only when asked to, on the address given.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OptionsError } from '@concord/runtime';
import { startCoordinator } from './coordinator-node.js';
import { compileCoordinatorOptions } from './options.js';
import { CoordinatorClient, eventually, freePorts, testLogger } from './testing.js';

const CONFIG = ['--engine', 'config', '--listen', '127.0.0.1:0', '--groups', 'g1=127.0.0.1:7101'];

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

describe('coordinator --metrics-listen', () => {
  it('is empty by default; a coordinator started so serves no metrics', async () => {
    const options = compileCoordinatorOptions({ argv: CONFIG, env: {} });
    assert.equal(options.metricsListen, undefined);
    const node = await startCoordinator(options, testLogger);
    try {
      assert.equal(node.metricsAddress, undefined);
    } finally {
      await node.stop();
    }
  });

  it('reads host:port from the flag or CONCORD_METRICS_LISTEN and refuses the gRPC address', () => {
    assert.deepEqual(compileCoordinatorOptions({ argv: [...CONFIG, '--metrics-listen', '0.0.0.0:7170'], env: {} }).metricsListen, {
      host: '0.0.0.0',
      port: 7170,
    });
    assert.deepEqual(compileCoordinatorOptions({ argv: CONFIG, env: { CONCORD_METRICS_LISTEN: '[::1]:7170' } }).metricsListen, { host: '::1', port: 7170 });
    assert.throws(
      () => compileCoordinatorOptions({ argv: ['--engine', 'config', '--groups', 'g1=127.0.0.1:7101', '--metrics-listen', '127.0.0.1:7070'], env: {} }),
      (error: unknown) => error instanceof OptionsError && /^--metrics-listen: must differ from --listen 127\.0\.0\.1:7070/.test(error.message),
    );
    assert.throws(
      () => compileCoordinatorOptions({ argv: [...CONFIG, '--metrics-listen', 'localhost'], env: {} }),
      (error: unknown) => error instanceof OptionsError && /^--metrics-listen: must be empty, or host:port/.test(error.message),
    );
  });

  it('serves the meta group and gRPC metrics while running, and stops serving them on stop', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'concord-coordinator-metrics-'));
    const [port] = (await freePorts(1)) as [number];
    const address = `127.0.0.1:${port}`;
    const options = compileCoordinatorOptions({
      argv: ['--listen', address, '--peers', `coordinator-0=${address}`, '--data-dir', dataDir, '--groups', 'g1=127.0.0.1:7101'],
      env: { CONCORD_METRICS_LISTEN: '127.0.0.1:0', CONCORD_TICK_MS: '10', CONCORD_SYNC: 'false' },
    });
    const node = await startCoordinator(options, testLogger);
    const client = new CoordinatorClient(node.address);
    try {
      assert.match(node.metricsAddress ?? '', /^127\.0\.0\.1:\d+$/);
      const url = `http://${node.metricsAddress!}/metrics`;
      // Once the meta group of one has elected itself and applied its bootstrap, the ring is served.
      await eventually('the ring', async () => (await client.ring()).groups.length === 1);
      const body = await eventually('the meta leader in the metrics', async () => {
        const { body: text } = await fetchText(url);
        return /^concord_raft_is_leader\{group="meta",member="coordinator-0"\} 1$/m.test(text) ? text : undefined;
      });
      assert.match(body, /^concord_raft_term\{group="meta",member="coordinator-0"\} [1-9]\d*$/m);
      assert.match(body, /^concord_grpc_server_handled_total\{service="concord\.v1\.Cluster",method="GetRing",code="OK"\} [1-9]\d*$/m);
      assert.doesNotMatch(body, /service="concord\.v1\.Consensus"/);
    } finally {
      client.close();
      await node.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
    await assert.rejects(fetchText(`http://${node.metricsAddress!}/metrics`), /ECONNREFUSED/);
  });
});
