// Commands of the `concord` CLI: `kv put|get|del|scan`, `status`, `health`, `member add|promote|remove`, and `serve <role>` (the entry
// point of the container image). Every command exits non-zero with the server's message on error.
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, Option } from 'commander';
import { ConcordClient, ConcordError, failedBeforeSending } from '@concord/client';
import type { ChangeShardMembershipResponse, StatusResponse } from '@concord/proto/cluster';
import { MembershipChangeKind } from '@concord/proto/shard';
import { DEFAULT_HEALTH_TIMEOUT_MS, checkHealth } from './health.js';
import { formatStatusTable, shortenError } from './status-table.js';
import { readTlsFlags, tlsFlagsForRole, tlsOptions, type TlsFlags } from './tls-flags.js';
import { DEFAULT_WATCH_SECONDS, parseWatchCount, parseWatchSeconds, watchStatus } from './status-watch.js';

export interface ProgramIo {
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const DEFAULT_ADDRESS = '127.0.0.1:7070';
/** Exit status of `concord health` for a command line it cannot run, as for the roles' bad settings. */
const EXIT_USAGE = 2;

interface ClientFlags extends TlsFlags {
  addr: string;
  routing: 'direct' | 'coordinator';
  timeout: string;
}

function parsePositiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag}: must be a non-negative integer (got "${text}")`);
  return n;
}

export function buildProgram(io: ProgramIo): Command {
  const program = new Command('concord')
    .description('Concord: a replicated, sharded key-value store with transactions and MapReduce')
    .showHelpAfterError()
    .addOption(
      new Option(
        '--addr <host:port[,host:port...]>',
        'coordinator address, or several separated by commas: a call that one cannot serve (unreachable, no meta leader yet) goes to the next',
      )
        .env('CONCORD_ADDR')
        .default(DEFAULT_ADDRESS),
    )
    .addOption(
      new Option('--routing <mode>', 'direct: talk to shard leaders using the cached ring; coordinator: send everything through the coordinator')
        .choices(['direct', 'coordinator'])
        .default('direct'),
    )
    .addOption(new Option('--timeout <ms>', 'deadline of each call in milliseconds').default('5000'));
  for (const option of tlsOptions()) program.addOption(option);
  program.configureOutput({
    writeOut: (s) => io.stdout.write(s),
    writeErr: (s) => io.stderr.write(s),
  });

  const withClient = async <T>(fn: (client: ConcordClient) => Promise<T>, routing?: ClientFlags['routing']): Promise<T> => {
    const flags = program.opts<ClientFlags>();
    const tls = readTlsFlags(flags);
    let client: ConcordClient;
    try {
      client = await ConcordClient.connect({
        ...(tls !== undefined ? { tls } : {}),
        address: flags.addr,
        routing: routing ?? flags.routing,
        deadlineMs: parsePositiveInt('--timeout', flags.timeout),
      });
    } catch (error) {
      if (error instanceof ConcordError && failedBeforeSending(error)) {
        throw new Error(
          `no coordinator reachable at ${flags.addr} (${shortenError(error.details)}); is the cluster running? ` +
            '--addr (or CONCORD_ADDR) names the coordinators, several separated by commas',
        );
      }
      throw describeError(error);
    }
    try {
      return await fn(client);
    } catch (error) {
      throw describeError(error);
    } finally {
      client.close();
    }
  };
  const print = (line: string) => io.stdout.write(`${line}\n`);

  const kv = program.command('kv').description('read and write keys');
  kv.command('put <key> <value>')
    .description('write a key (value as UTF-8 text)')
    .option('--expected-version <n>', 'compare-and-set: write only if the key has this version (0: must not exist)')
    .action(async (key: string, value: string, opts: { expectedVersion?: string }) => {
      const expectedVersion = opts.expectedVersion === undefined ? undefined : parsePositiveInt('--expected-version', opts.expectedVersion);
      const res = await withClient((c) => c.put(key, value, expectedVersion === undefined ? {} : { expectedVersion }));
      print(`OK version=${res.version}`);
    });
  kv.command('get <key>')
    .description('read a key; prints its value as UTF-8 text')
    .option('--serializable', 'allow a stale read from any replica (faster, may miss recent writes)')
    .option('--json', 'print {key, found, value (base64), version}')
    .action(async (key: string, opts: { serializable?: boolean; json?: boolean }) => {
      const res = await withClient((c) => c.get(key, { consistency: opts.serializable ? 'serializable' : 'linearizable' }));
      if (opts.json) {
        print(JSON.stringify({ key, found: res.found, value: res.value.toString('base64'), version: res.version }));
      } else if (!res.found) {
        io.stderr.write(`key "${key}" not found\n`);
        process.exitCode = 1;
      } else {
        print(res.value.toString('utf8'));
      }
    });
  kv.command('del <key>')
    .description('delete a key')
    .option('--expected-version <n>', 'compare-and-set: delete only if the key has this version')
    .action(async (key: string, opts: { expectedVersion?: string }) => {
      const expectedVersion = opts.expectedVersion === undefined ? undefined : parsePositiveInt('--expected-version', opts.expectedVersion);
      const res = await withClient((c) => c.delete(key, expectedVersion === undefined ? {} : { expectedVersion }));
      print(res.deleted ? `deleted (was version ${res.previousVersion})` : 'not found');
    });
  kv.command('scan')
    .description('list keys in order, by prefix or range [start, end)')
    .option('--prefix <p>', 'keys starting with this prefix')
    .option('--start <key>', 'first key (inclusive)')
    .option('--end <key>', 'end key (exclusive)')
    .option('--limit <n>', 'at most this many keys (1..10000)', '100')
    .option('--serializable', 'allow stale reads')
    .option('--json', 'one JSON object per line')
    .action(async (opts: { prefix?: string; start?: string; end?: string; limit: string; serializable?: boolean; json?: boolean }) => {
      await withClient(async (c) => {
        for await (const kvPair of c.scan({
          prefix: opts.prefix ?? '',
          startKey: opts.start ?? '',
          endKey: opts.end ?? '',
          limit: parsePositiveInt('--limit', opts.limit),
          consistency: opts.serializable ? 'serializable' : 'linearizable',
        })) {
          const value = Buffer.from(kvPair.value);
          if (opts.json) print(JSON.stringify({ key: kvPair.key, value: value.toString('base64'), version: kvPair.version }));
          else print(`${kvPair.key}\t${value.toString('utf8')}\tv${kvPair.version}`);
        }
      });
    });

  program
    .command('status')
    .description("members, leaders, terms, commit and applied indexes, lag, and each shard group's keys and share of the ring")
    .option('--json', 'machine-readable output (Cluster.Status as JSON; ringShare is the fraction of the ring a group owns)')
    .option('--watch [seconds]', `refresh every this many seconds (default ${DEFAULT_WATCH_SECONDS}) until Ctrl-C`)
    .option('--count <n>', 'with --watch: stop after this many snapshots')
    .action(async (opts: { json?: boolean; watch?: string | true; count?: string }) => {
      const render = (status: StatusResponse): string => (opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatusTable(status));
      const askStatus = async (client: ConcordClient): Promise<StatusResponse> => {
        try {
          return await client.status();
        } catch (error) {
          if (error instanceof ConcordError && failedBeforeSending(error)) throw noCoordinatorReachable(client.coordinatorAddresses.join(','), error);
          throw error;
        }
      };
      // Status asks the coordinators only, so it connects without fetching the ring: that needs a
      // meta leader, and a status is most needed when there is none (Cluster.Status still answers).
      if (opts.watch === undefined) {
        if (opts.count !== undefined) throw new Error('--count goes with --watch: concord status --watch [seconds] --count <n>');
        const status = await withClient(askStatus, 'coordinator');
        io.stdout.write(render(status));
        return;
      }
      const seconds = parseWatchSeconds(opts.watch);
      const count = opts.count === undefined ? undefined : parseWatchCount(opts.count);
      const terminal = (io.stdout as { isTTY?: boolean }).isTTY === true;
      const stop = new AbortController();
      const onInterrupt = (): void => stop.abort();
      process.once('SIGINT', onInterrupt);
      try {
        const result = await withClient(
          (c) =>
            watchStatus({
              snapshot: async () => {
                try {
                  return { ok: true, text: render(await askStatus(c)) };
                } catch (error) {
                  const described = describeError(error);
                  const message = described instanceof Error ? described.message : String(described);
                  return { ok: false, text: opts.json ? `${JSON.stringify({ error: message })}\n` : `no status: ${message}\n` };
                }
              },
              intervalMs: seconds * 1000,
              ...(count === undefined ? {} : { count }),
              out: io.stdout,
              clearScreen: terminal,
              signal: stop.signal,
              ...(opts.json ? {} : { heading: () => `every ${seconds}s · ${new Date().toISOString()}${terminal ? ' · Ctrl-C stops' : ''}` }),
            }),
          'coordinator',
        );
        // A script reading the snapshots learns from the status that one of them is not a view.
        if (result.failures > 0) process.exitCode = 1;
      } finally {
        process.off('SIGINT', onInterrupt);
      }
    });

  program
    .command('health')
    .description(
      "ask one process's grpc.health.v1 (exactly the --addr given, host:port: no routing, no forwarding), e.g. as a Kubernetes " +
        'exec probe with TLS; prints the status and exits 0 only when it is SERVING (1 otherwise, 2 on a usage error). ' +
        `Deadline: --timeout, ${DEFAULT_HEALTH_TIMEOUT_MS} ms unless given`,
    )
    .option('--service <name>', 'the service to ask about, e.g. concord.v1.Shard; empty (the default): the whole server', '')
    // A probe's command line that does not parse is a usage error (2), not an unhealthy process.
    .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE))
    .action(async (opts: { service: string }) => {
      const flags = program.opts<ClientFlags>();
      const usage = (message: string): void => {
        io.stderr.write(`concord health: ${message}\n`);
        process.exitCode = EXIT_USAGE;
      };
      const address = flags.addr.trim();
      if (!/^[^,\s]+:\d{1,5}$/.test(address)) return usage(`--addr: exactly one host:port, the process to ask (got "${flags.addr}")`);
      const timeoutMs = program.getOptionValueSource('timeout') === 'default' ? DEFAULT_HEALTH_TIMEOUT_MS : Number(flags.timeout);
      if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) return usage(`--timeout: a positive number of milliseconds (got "${flags.timeout}")`);
      let tls;
      try {
        tls = readTlsFlags(flags);
      } catch (error) {
        return usage(error instanceof Error ? error.message : String(error));
      }
      const answer = await checkHealth(address, opts.service, tls, timeoutMs);
      const what = opts.service === '' ? address : `${opts.service} at ${address}`;
      if (answer.kind === 'error') {
        io.stderr.write(`concord health: ${what}: ${answer.message} (${statusName(answer.code)})\n`);
        process.exitCode = 1;
        return;
      }
      print(answer.status);
      if (answer.status !== 'SERVING') {
        io.stderr.write(`concord health: ${what} is ${answer.status}\n`);
        process.exitCode = 1;
      }
    });

  const member = program
    .command('member')
    .description(
      "change a shard group's replicas, or with the group meta the coordinators, one step at a time: add (as a learner), promote, remove; or move its leadership",
    );
  const printMembers = (groupId: string, response: ChangeShardMembershipResponse, json: boolean | undefined) => {
    if (json) {
      print(JSON.stringify({ groupId, members: response.members }, null, 2));
      return;
    }
    print(`group ${groupId}:`);
    for (const m of response.members) print(`  ${m.memberId.padEnd(16)} ${m.address.padEnd(24)} ${m.voter ? 'voter' : 'learner'}`);
  };
  const changeMember = async (
    groupId: string,
    kind: MembershipChangeKind,
    memberId: string,
    address: string,
    opts: { json?: boolean },
  ) => {
    // Only the coordinators are asked, so no ring is fetched first.
    const response = await withClient((c) => c.changeShardMembership({ groupId, kind, memberId, address }), 'coordinator');
    printMembers(groupId, response, opts.json);
  };
  member
    .command('add <group> <member-id> <host:port>')
    .description(
      'add a replica (or, to group meta, a coordinator) as a learner: it receives the log but does not vote until promoted (start it with --join first)',
    )
    .option('--json', 'machine-readable output')
    .action((groupId: string, memberId: string, address: string, opts: { json?: boolean }) =>
      changeMember(groupId, MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_ADD_LEARNER, memberId, address, opts),
    );
  member
    .command('promote <group> <member-id>')
    .description("make a learner a voter, once it has caught up with the leader's log (concord status: its APPLIED reaches COMMIT)")
    .option('--json', 'machine-readable output')
    .action((groupId: string, memberId: string, opts: { json?: boolean }) =>
      changeMember(groupId, MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_PROMOTE, memberId, '', opts),
    );
  member
    .command('move-leader <group> <member-id>')
    .description("hand the group's leadership to one of its voters, e.g. before taking the leader's machine down; answers once it leads")
    .option('--json', 'machine-readable output')
    .action(async (groupId: string, memberId: string, opts: { json?: boolean }) => {
      const response = await withClient((c) => c.transferLeadership({ groupId, memberId }), 'coordinator');
      if (opts.json) print(JSON.stringify({ groupId, leaderId: response.leaderId, term: response.term }, null, 2));
      else print(`group ${groupId}: ${response.leaderId} leads (term ${response.term})`);
    });
  member
    .command('remove <group> <member-id>')
    .description('take a replica (or, from group meta, a coordinator) out of its group (a dead one, once its replacement is a voter)')
    .option('--json', 'machine-readable output')
    .action((groupId: string, memberId: string, opts: { json?: boolean }) =>
      changeMember(groupId, MembershipChangeKind.MEMBERSHIP_CHANGE_KIND_REMOVE, memberId, '', opts),
    );

  program
    .command('serve <role>')
    .description('run a Concord process: coordinator or shard (flags after the role; --help lists them)')
    .allowUnknownOption(true)
    .helpOption(false)
    .argument('[flags...]')
    .action(async (role: string, flags: string[]) => {
      // The client flags are the program's own, so commander takes them wherever they appear, also
      // after the role: say so rather than start a role that silently lost a flag it was given.
      for (const name of ['addr', 'routing', 'timeout']) {
        if (program.getOptionValueSource(name) === 'cli') {
          throw new Error(`serve: --${name} is a flag of the client commands, not of a ${role} (concord serve ${role} --help lists its flags)`);
        }
      }
      if (role === 'coordinator' || role === 'shard') await relaunchAsServer(role, io);
      switch (role) {
        case 'coordinator': {
          const { runCoordinator } = await import('@concord/coordinator');
          await runCoordinator([...flags, ...tlsFlagsForRole(program)], io.env);
          return;
        }
        case 'shard': {
          const { runShard } = await import('@concord/shard');
          await runShard([...flags, ...tlsFlagsForRole(program)], io.env);
          return;
        }
        default:
          throw new Error(`serve: unknown role "${role}" (use coordinator or shard)`);
      }
    });
  return program;
}

/**
 * Replaces this process with one started as a server should be, running the same command line:
 * with the server's node flags it lacks (CONCORD_NODE_FLAGS, by default
 * --initial-old-space-size=128; @concord/runtime's node-flags.ts says why) and, when the OTEL_*
 * variables ask for traces, with `--import @concord/runtime/register`. OpenTelemetry traces a gRPC
 * client only if it patched @grpc/grpc-js before the client's class was built (see
 * startTelemetry), and by the time a command runs this CLI has loaded grpc-js and the generated
 * clients. execve keeps the pid, so the signals of a supervisor (or of tini in the image) still
 * reach the role. CONCORD_SERVICE_NAME names the role's service, as `npm start` does.
 */
async function relaunchAsServer(role: string, io: ProgramIo): Promise<void> {
  const { definedEnv, isEntryPoint, missingNodeFlags, serverNodeFlags, telemetryRequested } = await import('@concord/runtime');
  const register = import.meta.resolve('@concord/runtime/register');
  const withTelemetry = telemetryRequested(io.env) && !importsAtStart(register);
  const flags = missingNodeFlags(serverNodeFlags(io.env), process.execArgv);
  if (!withTelemetry && flags.length === 0) return;
  // Only the `concord` command itself is replaced, never a program that embeds buildProgram.
  const cliEntryPoints = [new URL('../bin/concord.js', import.meta.url).href, new URL('./main.js', import.meta.url).href];
  if (!cliEntryPoints.some((url) => isEntryPoint(url))) return;
  if (typeof process.execve !== 'function') {
    const missing = [...flags, ...(withTelemetry ? ['--import', '@concord/runtime/register'] : [])].join(' ');
    io.stderr.write(
      `concord serve: Node ${process.version} cannot restart itself with ${missing}` +
        (withTelemetry ? ', so outgoing gRPC calls are not traced' : '') +
        `; start it as node ${missing} <concord> serve ...\n`,
    );
    return;
  }
  const env = definedEnv(io.env);
  if (withTelemetry) env['CONCORD_SERVICE_NAME'] ??= `concord-${role}`;
  const telemetryArgs = withTelemetry ? ['--import', register] : [];
  process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, ...telemetryArgs, ...process.argv.slice(1)], env);
}

/** Whether node was started with --import of `register` (as a URL, a path or the package specifier). */
function importsAtStart(register: string): boolean {
  const args = process.execArgv;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const value = arg === '--import' ? args[i + 1] : arg.startsWith('--import=') ? arg.slice('--import='.length) : undefined;
    if (value === undefined) continue;
    if (value === register || value === '@concord/runtime/register') return true;
    if (!value.includes(':') && pathToFileURL(resolvePath(value)).href === register) return true;
  }
  return false;
}

/** What `concord status` says when no coordinator of --addr took the call. */
function noCoordinatorReachable(addresses: string, error: ConcordError): Error {
  return new Error(
    `no coordinator reachable at ${addresses} (${shortenError(error.details)}); is the cluster running? ` +
      '--addr (or CONCORD_ADDR) names the coordinators, several separated by commas',
  );
}

/** A ConcordError as the CLI prints it: the server's message and the status name. */
function describeError(error: unknown): unknown {
  return error instanceof ConcordError ? new Error(`${error.details} (${statusName(error.code)})`) : error;
}

function statusName(code: number): string {
  const names = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];
  return names[code] ?? `code ${code}`;
}
