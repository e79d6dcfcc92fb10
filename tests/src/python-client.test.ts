// Code generated from proto/ in another language calls a real cluster: Python, with gRPC's C-core
// (the HTTP/2 stack of Python, Ruby, PHP and C++ clients), next to grpcurl (Go) in the README
// examples and the SDK (Node). The program is tests/python/kv_client.py; its code is generated here
// with grpcio-tools, as a user would. Needs .tools/python (`bash scripts/install-tools.sh
// python-grpc`; npm test and CI run it first) and fails, naming that command, without it.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePorts, startLocalCluster, type LocalCluster } from './harness/cluster.js';
import { describeResult, runCommand } from './harness/command.js';
import { repoRoot } from './harness/paths.js';

const PYTHON = join(repoRoot, '.tools', 'bin', 'python-grpc');
const INSTALL_HINT = 'run `bash scripts/install-tools.sh python-grpc` (it installs grpcio and grpcio-tools into .tools/python)';
const GROUPS = ['g1', 'g2'];

interface Summary {
  versions: number[];
  concurrent_puts: number;
  large_value_bytes: number;
  scanned: number;
  refused: { code: string; details: string };
  replicas: { address: string; group: string; member: string; role: string }[];
}

/** The coordinator's connections so far, by what served them. */
async function connections(metricsAddress: string): Promise<{ lean: number; node: number }> {
  const text = await (await fetch(`http://${metricsAddress}/metrics`)).text();
  const count = (label: string): number => Number(new RegExp(`concord_grpc_server_connections_total\\{served_by="${label}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return { lean: count('lean'), node: count('node_http2') };
}

describe('a Python client generated from proto/', () => {
  let cluster: LocalCluster;
  let metricsAddress: string;
  let generated: string;

  before(async () => {
    assert.ok(existsSync(PYTHON), `.tools/bin/python-grpc is missing: ${INSTALL_HINT}`);
    const [metricsPort] = await freePorts(1);
    metricsAddress = `127.0.0.1:${metricsPort}`;
    // One coordinator: its KV methods are answered directly (no forwarding), so the Python
    // client's calls are served by the lean HTTP/2 server, which the metrics below confirm.
    cluster = await startLocalCluster({ groups: GROUPS, coordinators: 1, coordinatorArgs: ['--metrics-listen', metricsAddress] });
    generated = mkdtempSync(join(tmpdir(), 'concord-python-'));
    const protos = readdirSync(join(repoRoot, 'proto', 'concord', 'v1')).map((name) => join('proto', 'concord', 'v1', name));
    const protoc = await runCommand(PYTHON, ['-m', 'grpc_tools.protoc', '-I', 'proto', `--python_out=${generated}`, `--grpc_python_out=${generated}`, ...protos], { cwd: repoRoot, timeoutMs: 60_000 });
    assert.equal(protoc.code, 0, `grpc_tools.protoc failed: ${describeResult(protoc)}`);
  });

  after(async () => {
    await cluster?.stop();
    if (generated !== undefined) rmSync(generated, { recursive: true, force: true });
  });

  it('puts, gets, deletes, scans, sends a large value and many calls at once, and is refused clearly', async () => {
    const shards = GROUPS.flatMap((group) => cluster.shardAddresses(group));
    const connectionsBefore = await connections(metricsAddress);
    const run = await runCommand(PYTHON, ['tests/python/kv_client.py', '--generated', generated, '--coordinator', cluster.coordinatorAddress, '--shards', shards.join(','), '--prefix', 'py:'], {
      cwd: repoRoot,
      timeoutMs: 120_000,
    });
    assert.equal(run.code, 0, describeResult(run));
    const summary = JSON.parse(run.stdout) as Summary;
    assert.ok(summary.versions[1]! > summary.versions[0]!, `versions ${summary.versions.join(' then ')}`);
    assert.equal(summary.concurrent_puts, 200);
    assert.equal(summary.large_value_bytes, 1024 * 1024);
    assert.equal(summary.scanned, 200);
    assert.deepEqual(summary.refused, { code: 'INVALID_ARGUMENT', details: 'key: must not be empty' });
    assert.deepEqual(
      summary.replicas.map(({ address, member }) => ({ address, member })),
      GROUPS.flatMap((group) => cluster.shardAddresses(group).map((address, replica) => ({ address, member: `${group}-${replica}` }))),
    );
    for (const group of GROUPS) {
      const roles = summary.replicas.filter((replica) => replica.group === group).map((replica) => replica.role);
      assert.equal(roles.filter((role) => role === 'LEADER').length, 1, `one leader in ${group}: ${roles.join(', ')}`);
    }
    // The Python client's connection to the coordinator was served by the lean HTTP/2 server.
    const connectionsAfter = await connections(metricsAddress);
    assert.ok(connectionsAfter.lean > connectionsBefore.lean, `no new lean connection: ${JSON.stringify({ connectionsBefore, connectionsAfter })}`);
    assert.equal(connectionsAfter.node, connectionsBefore.node, 'no connection handed to node:http2');
  });
});
