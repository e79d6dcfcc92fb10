// The container image end to end: scripts/image.sh builds concord:dev from deploy/Dockerfile, then a
// shard group of three Raft replicas and a coordinator run from it as containers, each started the
// way a deployment starts it (`docker run concord:dev <role> <flags>`), and keys are written and read
// through them with the SDK and with the CLI inside a container. Defends: the image runs each role
// through `concord serve`, under tini, as an unprivileged user whose data lives in the volume; it
// carries a working `concord` CLI; and with OTEL_* set, a role traces its outgoing gRPC calls
// (OpenTelemetry is loaded before grpc-js).
//
// The containers share the host's network and listen on 127.0.0.1, like every other test's
// processes, on ports the test picks. Docker must be running (`bash scripts/install-tools.sh docker`):
// without it this test fails, saying so. The bounds below only keep a broken build from hanging.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { StartedTestContainer } from 'testcontainers';
import { ConcordClient } from '@concord/client';
import { freePorts } from './harness/cluster.js';
import { describeResult, runCommand } from './harness/command.js';
import { repoRoot } from './harness/paths.js';
import { sleep } from './harness/grpc.js';

// testcontainers reads these when it first talks to Docker. No reaper container: there is no
// registry to pull it from, and `after` stops every container this test starts. The containers use
// the host's network, so they are reached on 127.0.0.1.
process.env['TESTCONTAINERS_RYUK_DISABLED'] ??= 'true';
process.env['TESTCONTAINERS_HOST_OVERRIDE'] ??= '127.0.0.1';
const { GenericContainer, Wait } = await import('testcontainers');

const IMAGE = 'concord:dev';
const GROUP = 'g1';
const REPLICAS = 3;
/** Where the image's volume is; every role is given it as --data-dir. */
const DATA_DIR = '/var/lib/concord';
/** The unprivileged user of deploy/Dockerfile. */
const CONCORD_UID = '10001';
/** Bound on `scripts/image.sh`: a fresh machine (no base image, no layers) takes a few minutes. */
const IMAGE_BUILD_BOUND_MS = 15 * 60_000;
/** Bound on one container printing its "serving" line. */
const SERVING_BOUND_MS = 60_000;
/**
 * Bound on one client operation succeeding, retried until then: the first waits out the group's
 * first election, and on a loaded machine an answer can miss a call's deadline or a term change.
 */
const OPERATION_BOUND_MS = 30_000;
/** Bound on the coordinator exporting the span of its call to the shard group (batched exports). */
const SPAN_EXPORT_BOUND_MS = 30_000;
const POLL_MS = 250;
const CALL_DEADLINE_MS = 5_000;
/** Bound on `docker exec` of the CLI. */
const EXEC_BOUND_MS = 30_000;
const STOP_GRACE_S = 10;
/** Marks this test's containers, to clean up after a run that was killed before `after`. */
const TEST_LABEL = 'org.concord.test';

/** A running container and everything it printed. */
interface RoleContainer {
  name: string;
  address: string;
  container: StartedTestContainer;
  output: string[];
}

/** The last lines a container printed, for failure messages. */
function tail(role: RoleContainer, lines = 40): string {
  return role.output.slice(-lines).map((line) => `  ${role.name} | ${line}`).join('\n');
}

/** The last lines of every container, for failure messages. */
function tails(roles: readonly (RoleContainer | undefined)[], lines = 25): string {
  return roles.flatMap((role) => (role === undefined ? [] : [tail(role, lines)])).join('\n');
}

/** Starts `concord:dev <role> <flags>` on the host network and resolves once it logged "serving". */
async function startRole(name: string, address: string, args: string[], environment: Record<string, string> = {}): Promise<RoleContainer> {
  const output: string[] = [];
  const collect = (stream: Readable): void => {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      output.push(...lines);
    });
  };
  try {
    const container = await new GenericContainer(IMAGE)
      .withNetworkMode('host')
      .withCommand(args)
      .withEnvironment(environment)
      .withLabels({ [TEST_LABEL]: 'container.test' })
      .withLogConsumer(collect)
      .withWaitStrategy(Wait.forLogMessage(/"msg":"serving"/))
      .withStartupTimeout(SERVING_BOUND_MS)
      .start();
    return { name, address, container, output };
  } catch (error) {
    const printed = output.length > 0 ? `\n${output.slice(-40).map((line) => `  ${name} | ${line}`).join('\n')}` : '';
    throw new Error(`${name} (${IMAGE} ${args.join(' ')}) did not start serving: ${error instanceof Error ? error.message : String(error)}${printed}`);
  }
}

/** Runs a command in a container; asserts it ran to completion. */
async function exec(role: RoleContainer, command: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`docker exec ${command.join(' ')} in ${role.name} did not finish within ${EXEC_BOUND_MS} ms`)), EXEC_BOUND_MS);
  });
  try {
    return await Promise.race([role.container.exec(command), bound]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fails with a clear message when Docker is not there, rather than with testcontainers' own. */
async function requireDocker(): Promise<void> {
  const info = await runCommand('docker', ['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 30_000 }).catch((error: unknown) => {
    throw new Error(`Docker is needed for the container image test, and running \`docker\` failed: ${error instanceof Error ? error.message : String(error)}; install and start it with: bash scripts/install-tools.sh docker`);
  });
  if (info.code !== 0) {
    throw new Error(`Docker is needed for the container image test, and it does not answer (docker info ${describeResult(info)}); start it with: bash scripts/install-tools.sh docker`);
  }
}

/** Removes the containers a run of this test left behind when it was killed before its `after`. */
async function removeLeftovers(): Promise<void> {
  const listed = await runCommand('docker', ['ps', '--all', '--quiet', '--filter', `label=${TEST_LABEL}`], { timeoutMs: 30_000 });
  const ids = listed.stdout.split('\n').filter((id) => id !== '');
  if (ids.length === 0) return;
  const removed = await runCommand('docker', ['rm', '--force', '--volumes', ...ids], { timeoutMs: 60_000 });
  if (removed.code !== 0) throw new Error(`could not remove the containers an earlier run left: docker rm ${describeResult(removed)}`);
}

/** Builds the image with scripts/image.sh, its output in a log file named on failure. */
async function buildImage(): Promise<void> {
  const logDir = await mkdtemp(join(tmpdir(), 'concord-image-'));
  const logPath = join(logDir, 'image.log');
  const result = await runCommand('bash', [join(repoRoot, 'scripts', 'image.sh'), '--tag', IMAGE], { timeoutMs: IMAGE_BUILD_BOUND_MS });
  await writeFile(logPath, `${result.stdout}\n--- stderr\n${result.stderr}`);
  if (result.code !== 0 || result.timedOut) {
    const lines = `${result.stdout}\n${result.stderr}`.trimEnd().split('\n').slice(-40).join('\n');
    throw new Error(`scripts/image.sh failed to build ${IMAGE}: ${result.timedOut ? `still running after ${IMAGE_BUILD_BOUND_MS} ms` : `exit ${result.code}`} (full log: ${logPath})\n${lines}`);
  }
}

/**
 * Retries `operation` until it succeeds or `boundMs` passed, then fails with the last error and
 * `context()`. Retries are reported through `note`, so a run that needed them says so.
 */
async function eventually<T>(
  what: string,
  boundMs: number,
  operation: () => Promise<T>,
  { note, context }: { note?: (message: string) => void; context?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + boundMs;
  let lastError = '';
  for (let attempt = 1; ; attempt++) {
    try {
      const value = await operation();
      if (attempt > 1) note?.(`${what}: succeeded at attempt ${attempt}; before that: ${lastError}`);
      return value;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
      if (Date.now() >= deadline) {
        throw new Error(`${what}: still failing after ${attempt} attempts: ${lastError}${context === undefined ? '' : `\n${context()}`}`);
      }
      await sleep(POLL_MS);
    }
  }
}

describe(`the container image (${IMAGE})`, { timeout: IMAGE_BUILD_BOUND_MS + 5 * 60_000 }, () => {
  const shards: RoleContainer[] = [];
  let coordinator: RoleContainer | undefined;
  const clients: ConcordClient[] = [];
  const run = randomBytes(4).toString('hex');

  before(async () => {
    await requireDocker();
    await removeLeftovers();
    await buildImage();

    const ports = await freePorts(REPLICAS + 1);
    const addresses = ports.slice(0, REPLICAS).map((port) => `127.0.0.1:${port}`);
    const peers = addresses.map((address, replica) => `${GROUP}-${replica}=${address}`).join(',');
    const started = await Promise.allSettled(
      addresses.map((address, replica) =>
        startRole(`${GROUP}-${replica}`, address, [
          'shard',
          '--group-id', GROUP,
          '--member-id', `${GROUP}-${replica}`,
          '--listen', address,
          '--peers', peers,
          '--data-dir', DATA_DIR,
          '--ring-groups', GROUP,
        ]),
      ),
    );
    for (const outcome of started) if (outcome.status === 'fulfilled') shards.push(outcome.value);
    const failed = started.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    if (failed !== undefined) throw failed.reason;

    // The console exporter prints each span to the coordinator's output, where the test reads it.
    const coordinatorAddress = `127.0.0.1:${ports[REPLICAS]!}`;
    coordinator = await startRole(
      'coordinator',
      coordinatorAddress,
      ['coordinator', '--engine', 'config', '--listen', coordinatorAddress, '--groups', `${GROUP}=${addresses.join('|')}`],
      { OTEL_TRACES_EXPORTER: 'console' },
    );
  });

  /** `operation`, retried within OPERATION_BOUND_MS; a failure shows what every container printed. */
  const retried = <T>(t: TestContext, what: string, operation: () => Promise<T>): Promise<T> =>
    eventually(what, OPERATION_BOUND_MS, operation, { note: (message) => t.diagnostic(message), context: () => tails([coordinator, ...shards]) });

  /** `concord --addr <coordinator> <args>` run in `role`'s container; resolves with its stdout once it exits 0. */
  const concord = (t: TestContext, role: RoleContainer, args: string[]): Promise<string> =>
    retried(t, `concord ${args.join(' ')} in ${role.name}`, async () => {
      const result = await exec(role, ['concord', '--addr', coordinator!.address, ...args]);
      if (result.exitCode !== 0) throw new Error(`exit ${result.exitCode}: ${result.stdout}${result.stderr}`);
      return result.stdout;
    });

  after(async () => {
    for (const client of clients) client.close();
    const running = [...(coordinator === undefined ? [] : [coordinator]), ...shards];
    const stopped = await Promise.allSettled(running.map((role) => role.container.stop({ timeout: STOP_GRACE_S, remove: true, removeVolumes: true })));
    const failures = stopped.flatMap((outcome, index) => (outcome.status === 'rejected' ? [`${running[index]!.name}: ${String(outcome.reason)}`] : []));
    if (failures.length > 0) throw new Error(`could not stop every container:\n${failures.join('\n')}`);
  });

  it('runs each role through tini, as the unprivileged user, with its data in the volume', async () => {
    const shard = shards[0]!;
    const pid1 = await exec(shard, ['cat', '/proc/1/comm']);
    assert.equal(pid1.stdout.trim(), 'tini', `PID 1 of ${shard.name}\n${tail(shard)}`);
    const uid = await exec(shard, ['id', '-u']);
    assert.equal(uid.stdout.trim(), CONCORD_UID, `the user ${shard.name} runs as`);
    // The write-ahead log is where the role was told to keep it, in the volume.
    const files = await exec(shard, ['ls', '-A', DATA_DIR]);
    assert.equal(files.exitCode, 0, `ls ${DATA_DIR}: ${files.stderr}`);
    assert.notEqual(files.stdout.trim(), '', `${shard.name} wrote nothing under ${DATA_DIR}\n${tail(shard)}`);
  });

  it('takes a write and a read through the coordinator with the SDK, replicated by the shard group', async (t) => {
    const client = await ConcordClient.connect({ address: coordinator!.address, deadlineMs: CALL_DEADLINE_MS });
    clients.push(client);
    const key = `container:${run}:sdk`;
    const put = await retried(t, 'the first write', () => client.put(key, 'from the SDK'));
    assert.ok(put.version > 0, `version of the first write: ${put.version}`);
    const got = await retried(t, 'reading it back', () => client.get(key));
    assert.equal(got.found, true, `${key} not found after it was written`);
    assert.equal(got.value.toString('utf8'), 'from the SDK');
    assert.equal(got.version, put.version);
  });

  it('carries the concord CLI: kv put and kv get inside a container', async (t) => {
    const key = `container:${run}:cli`;
    const put = await concord(t, coordinator!, ['kv', 'put', key, 'from the CLI']);
    assert.match(put, /^OK version=\d+\n$/);
    // From another container of the group, through the coordinator too.
    assert.equal(await concord(t, shards[1]!, ['kv', 'get', key]), 'from the CLI\n');
    // And the SDK sees the CLI's write.
    const client = await ConcordClient.connect({ address: coordinator!.address, deadlineMs: CALL_DEADLINE_MS });
    clients.push(client);
    assert.equal((await retried(t, 'reading the CLI\'s write with the SDK', () => client.get(key))).value.toString('utf8'), 'from the CLI');
  });

  it("traces the coordinator's calls to the shard group when OTEL_* asks for it", async (t) => {
    const client = await ConcordClient.connect({ address: coordinator!.address, routing: 'coordinator', deadlineMs: CALL_DEADLINE_MS });
    clients.push(client);
    await retried(t, 'a write through the coordinator', () => client.put(`container:${run}:traced`, 'traced'));
    // A client span exists only if OpenTelemetry patched grpc-js before the generated clients were
    // built; the console exporter prints it with the role's service name.
    const clientSpan = /name: 'grpc\.concord\.v1\.Shard\/Put',(?:\n.*){0,3}?\n\s*kind: 2,/;
    await eventually('the span of the coordinator calling Shard/Put', SPAN_EXPORT_BOUND_MS, async () => {
      const printed = coordinator!.output.join('\n');
      if (!clientSpan.test(printed)) throw new Error(`no client span for Shard/Put in the coordinator's output yet\n${tail(coordinator!, 80)}`);
    });
    assert.match(coordinator!.output.join('\n'), /'service\.name': 'concord-coordinator'/);
  });
});
