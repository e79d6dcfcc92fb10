// `concord health`, the exec probe of pods with TLS, against real processes: it asks exactly the
// address given, prints the status, and exits 0 only when it is SERVING, 1 otherwise (a service the
// process does not serve yet, one it does not have, nothing listening), 2 on a usage error. Over
// mutual TLS it dials both 127.0.0.1 (an IP target, which Node refuses as a TLS server name) and
// localhost (what the chart's probes dial), with the CONCORD_TLS_* variables a pod has.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { createCertificateAuthority, issueCertificate } from '@concord/runtime/testing';
import { freePorts } from './harness/cluster.js';
import { describeResult, runCommand, type CommandResult } from './harness/command.js';
import { sleep } from './harness/grpc.js';
import { childEnv, nodeBinary, repoRoot } from './harness/paths.js';
import { track } from './harness/reaper.js';

const SHARD_MAIN = 'services/shard/dist/main.js';
/** Liveness bounds: failure guards, not expected durations. */
const SERVING_BOUND_MS = 30_000;
const POLL_ATTEMPTS = 100;
const POLL_PAUSE_MS = 100;

const children: ChildProcess[] = [];
const dirs: string[] = [];
after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** Starts a shard process; with `untilServing`, resolves once it logged "serving" (with its address). */
async function startShard(args: readonly string[], env: Record<string, string> = {}, untilServing = true): Promise<{ child: ChildProcess; address?: string }> {
  const child = spawn(nodeBinary, [SHARD_MAIN, ...args], { cwd: repoRoot, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  children.push(child);
  if (!untilServing) return { child };
  const output: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "serving" line within ${SERVING_BOUND_MS} ms:\n${output.join('')}`)), SERVING_BOUND_MS);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      if (!line.startsWith('{')) return;
      const record = JSON.parse(line) as { msg?: string; address?: string };
      if (record.msg === 'serving' && record.address !== undefined) {
        clearTimeout(timer);
        resolve(record.address);
      }
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the shard ended (${code ?? signal}) before serving:\n${output.join('')}`));
    });
  });
  return { child, address };
}

function health(args: readonly string[], env: Record<string, string> = {}): Promise<CommandResult> {
  return runCommand(nodeBinary, ['packages/cli/bin/concord.js', 'health', ...args], { env, timeoutMs: 20_000 });
}

function assertExit(result: CommandResult, code: number, stdout?: RegExp): void {
  assert.equal(result.code, code, describeResult(result));
  if (stdout !== undefined) assert.match(result.stdout, stdout, describeResult(result));
}

test('concord health asks one process: SERVING exits 0; not serving, unknown service or nothing listening exit 1; usage errors exit 2', { timeout: 120_000 }, async () => {
  const dataDir = await tempDir('concord-health-');
  const { address } = await startShard(['--engine', 'single', '--group-id', 'g1', '--ring-groups', 'g1', '--data-dir', join(dataDir, 'single')]);

  assertExit(await health(['--addr', address!]), 0, /^SERVING\n$/);
  assertExit(await health(['--addr', address!, '--service', 'concord.v1.Shard']), 0, /^SERVING\n$/);
  // The flag before the command works too, as for every command.
  assertExit(await runCommand(nodeBinary, ['packages/cli/bin/concord.js', '--addr', address!, 'health'], { timeoutMs: 20_000 }), 0, /^SERVING\n$/);
  const unknown = await health(['--addr', address!, '--service', 'concord.v1.Nope']);
  assertExit(unknown, 1);
  assert.match(unknown.stderr, /concord\.v1\.Nope at .*NOT_FOUND/, describeResult(unknown));

  const [closedPort] = await freePorts(1);
  const nothing = await health(['--addr', `127.0.0.1:${closedPort}`, '--timeout', '1000']);
  assertExit(nothing, 1);
  assert.match(nothing.stderr, /UNAVAILABLE|DEADLINE_EXCEEDED/, describeResult(nothing));

  // Usage errors: one address, a number of milliseconds, all three --tls-* or none, known flags.
  assertExit(await health(['--addr', `${address!},${address!}`]), 2);
  assertExit(await health(['--addr', address!, '--timeout', 'soon']), 2);
  assertExit(await health(['--addr', address!], { CONCORD_TLS_CA: join(dataDir, 'ca.crt') }), 2);
  assertExit(await health(['--addr', address!, '--bogus']), 2);

  // A raft replica whose peers are not there is stuck asking them before it bootstraps: its server
  // answers (SERVING) while concord.v1.Shard is NOT_SERVING.
  const [port, peer1, peer2] = (await freePorts(3)) as [number, number, number];
  await startShard(
    [
      '--group-id', 'g1', '--member-id', 'g1-0', '--listen', `127.0.0.1:${port}`, '--ring-groups', 'g1',
      '--peers', `g1-0=127.0.0.1:${port},g1-1=127.0.0.1:${peer1},g1-2=127.0.0.1:${peer2}`,
      '--data-dir', join(dataDir, 'raft'), '--bootstrap-check-timeout', '10m',
    ],
    {},
    false,
  );
  let server: CommandResult | undefined;
  for (let attempt = 0; attempt < POLL_ATTEMPTS; attempt++) {
    server = await health(['--addr', `127.0.0.1:${port}`]);
    if (server.code === 0) break;
    await sleep(POLL_PAUSE_MS);
  }
  assertExit(server!, 0, /^SERVING\n$/);
  const notServing = await health(['--addr', `127.0.0.1:${port}`, '--service', 'concord.v1.Shard']);
  assertExit(notServing, 1, /^NOT_SERVING\n$/);
  assert.match(notServing.stderr, /concord\.v1\.Shard at 127\.0\.0\.1:\d+ is NOT_SERVING/);
});

test('concord health over mutual TLS dials 127.0.0.1 and localhost with the CONCORD_TLS_* files', { timeout: 120_000 }, async () => {
  const dir = await tempDir('concord-health-tls-');
  const ca = createCertificateAuthority(dir, 'cluster-ca');
  const node = issueCertificate(ca, dir, 'concord-node', { dns: ['localhost'], ips: ['127.0.0.1'] });
  const tlsEnv = { CONCORD_TLS_CA: ca.cert, CONCORD_TLS_CERT: node.cert, CONCORD_TLS_KEY: node.key };
  const { address } = await startShard(['--engine', 'single', '--group-id', 'g1', '--ring-groups', 'g1', '--data-dir', join(dir, 'data')], tlsEnv);
  const port = address!.slice(address!.lastIndexOf(':') + 1);

  for (const host of ['127.0.0.1', 'localhost']) {
    assertExit(await health(['--addr', `${host}:${port}`, '--service', 'concord.v1.Shard'], tlsEnv), 0, /^SERVING\n$/);
  }
  // The same with the flags instead of the variables.
  assertExit(await health(['--addr', `localhost:${port}`, '--tls-ca', ca.cert, '--tls-cert', node.cert, '--tls-key', node.key]), 0, /^SERVING\n$/);
  // Without a client certificate the server refuses the handshake: not healthy, as far as anyone can tell.
  const plaintext = await health(['--addr', `localhost:${port}`]);
  assertExit(plaintext, 1);
  assert.match(plaintext.stderr, /UNAVAILABLE/, describeResult(plaintext));
});
