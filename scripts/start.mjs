// `npm start`: sets the working copy up, then runs the local Concord cluster of
// deploy/local/cluster.json — the meta group of three coordinators and three shard groups of three
// Raft replicas — as separate processes on 127.0.0.1, and supervises them. Each member keeps its
// data in .concord/<member>/ (kept across restarts; `npm start -- --fresh` wipes it) and logs JSON
// to .concord/logs/<member>.log; this script prints only lifecycle events: who leads which group,
// who died and the command that brings it back. Ctrl-C stops everything.
//
// When a process dies the others keep running. `npm run local -- restart <member>` (scripts/
// local.mjs) asks this supervisor, through a request file in .concord/control/, to start it again,
// so the new process is this supervisor's child like the others and Ctrl-C still stops it.
//
// `npm start -- --jaeger` also runs Jaeger (.tools/bin/jaeger, built by install-tools when missing)
// on 127.0.0.1 with deploy/local/jaeger.yaml, and points every process at it; see docs/tracing.md.
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { childEnv, ensureSetup, pinnedNode, root, run } from './lib.mjs';
import {
  MEMBER_ACTIONS,
  META_GROUP,
  dataRoot,
  ensureControlDirs,
  isAliveRunning,
  jaegerBinary,
  jaegerConfig,
  jaegerEndpoints,
  jaegerLogPath,
  jaegerProcessEnv,
  loadLocalCluster,
  localCommand,
  otelEnvFor,
  pendingRequests,
  readState,
  removeQuietly,
  requestsDir,
  responsesDir,
  shown,
  stateFile,
  writeJsonAtomic,
} from './local-cluster.mjs';

/** SIGTERM gets this long before SIGKILL, when stopping one process or all of them. */
const STOP_GRACE_MS = 10_000;
/** How long the banner waits for every Raft group to elect a leader before printing anyway. */
const LEADER_WAIT_MS = 15_000;
/**
 * How long the banner waits for Cluster.GetRing to answer on the first coordinator: the meta group
 * has elected a leader and holds the ring (seeded from --groups on a fresh start).
 */
const RING_WAIT_MS = 30_000;
/** Deadline of one GetRing probe, and the pause between probes. */
const RING_PROBE_DEADLINE_MS = 1_000;
const RING_PROBE_PAUSE_MS = 200;
/** How often request files are looked for. */
const REQUEST_POLL_MS = 200;
/** How often the members' log files are read for lifecycle lines (serving, leader changes). */
const LOG_POLL_MS = 100;
/** How long Jaeger may take to report healthy (it starts in about a second). */
const JAEGER_READY_MS = 30_000;

const args = process.argv.slice(2);
if (args.includes('--help')) {
  console.log(`usage: npm start [-- --fresh] [-- --skip-setup] [-- --jaeger]
  --fresh       wipe .concord/ (all local data and logs) before starting
  --skip-setup  do not install/generate/build first
  --jaeger      also run Jaeger on 127.0.0.1 (UI and query API on :16686, OTLP on :4317/:4318)
                and send every process's traces to it; see docs/tracing.md

While it runs, from another terminal:
  npm run local -- status            which processes run, and each group's leader
  npm run local -- kill <member>     SIGKILL one process (e.g. g1-0, coordinator-1), for demos
  npm run local -- stop <member>     stop one process gracefully
  npm run local -- restart <member>  start it again (or restart a running one)
See docs/operations.md.`);
  process.exit(0);
}

const withJaeger = args.includes('--jaeger');
const unknown = args.filter((arg) => arg !== '--fresh' && arg !== '--skip-setup' && arg !== '--jaeger');
if (unknown.length > 0) {
  console.error(`concord: unknown argument ${unknown.join(' ')}; see npm start -- --help`);
  process.exit(2);
}

const { engine, groupIds, coordinators, processes: specs } = loadLocalCluster();

// One supervisor at a time: a second would fight the first for the ports and the data.
const previous = readState();
if (previous !== undefined) {
  if (isAliveRunning(previous.pid, 'scripts/start.mjs')) {
    console.error(
      `concord: a local cluster is already running (supervisor pid ${previous.pid}, started ${previous.startedAt}).\n` +
        `Stop it with Ctrl-C in its terminal (or \`kill -INT ${previous.pid}\`), or use \`npm run local -- status\`.`,
    );
    process.exit(1);
  }
  const orphans = [...(previous.members ?? []), ...(previous.jaeger ? [{ name: 'jaeger', ...previous.jaeger }] : [])].filter(
    (member) => member.pid !== null && isAliveRunning(member.pid, member.command),
  );
  if (orphans.length > 0) {
    console.error(
      `concord: processes of an earlier run, whose supervisor is gone, still hold the cluster's ports: ` +
        `${orphans.map((member) => `${member.name} (pid ${member.pid})`).join(', ')}.\n` +
        `Stop them with \`kill ${orphans.map((member) => member.pid).join(' ')}\`, then run npm start again.`,
    );
    process.exit(1);
  }
}

if (!args.includes('--skip-setup')) {
  try {
    ensureSetup();
  } catch (error) {
    console.error(`concord: setup failed: ${error.message}`);
    process.exit(1);
  }
}
if (args.includes('--fresh')) {
  rmSync(dataRoot, { recursive: true, force: true });
  console.log('concord: wiped .concord/');
}
ensureControlDirs();
for (const dir of [requestsDir, responsesDir]) for (const name of readdirSync(dir)) removeQuietly(join(dir, name));

// Data of the earlier one-replica-per-group layout (.concord/g1/ ...) is not read by this one.
const leftovers = groupIds.filter((group) => existsSync(join(dataRoot, group)));
if (leftovers.length > 0) {
  console.log(
    `concord: ${leftovers.map((group) => `.concord/${group}/`).join(', ')} hold data of the earlier one-replica layout, which this ` +
      `cluster does not read (each replica keeps its data in .concord/<member>/); \`npm start -- --fresh\` removes them.`,
  );
}

const node = pinnedNode();
// Given up front, so a member need not restart itself to get them (packages/runtime/src/node-flags.ts).
const { serverNodeFlags } = await import('@concord/runtime/node-flags');
let nodeFlags;
try {
  nodeFlags = serverNodeFlags(process.env);
} catch (error) {
  console.error(`concord: ${error.message}`);
  process.exit(1);
}
const startedAt = new Date().toISOString();
let shuttingDown = false;
let started = false;
/** With --jaeger: the Jaeger process, where it listens, and the OTEL_* settings every member gets. */
let jaeger;

/** Each process: its spec, and its current child and state. */
const members = new Map(specs.map((spec) => [spec.name, { spec, child: undefined, state: 'not started', since: startedAt, exit: '', expectedExit: undefined }]));
/** Each group's leader (the shard groups' and the coordinators' meta group), as the members' "raft role changed" log lines say. */
const leaders = new Map();

function describeExit(code, signal) {
  return signal ?? `exit ${code}`;
}

function isRunning(member) {
  return member.child !== undefined && member.child.exitCode === null && member.child.signalCode === null;
}

function writeState() {
  writeJsonAtomic(stateFile, {
    pid: process.pid,
    startedAt,
    engine,
    members: [...members.values()].map(({ spec, child, state, since, exit }) => ({
      name: spec.name,
      kind: spec.kind,
      group: spec.group ?? null,
      address: spec.address,
      // What its command line contains, so a later run can tell this process from a reused pid.
      command: `${join(root, spec.script)} ${spec.args.join(' ')}`,
      pid: state === 'starting' || state === 'running' ? (child?.pid ?? null) : null,
      state,
      since,
      exit,
      log: shown(spec.logPath),
    })),
    leaders: Object.fromEntries(leaders),
    ...(jaeger === undefined
      ? {}
      : { jaeger: { pid: jaeger.child.exitCode === null && jaeger.child.signalCode === null ? jaeger.child.pid : null, command: jaegerConfig, ui: `http://${jaeger.endpoints.queryHttp}` } }),
  });
}

/** Follows a member's JSON log line: the serving line, and Raft role changes. */
function onLogRecord(member, record, markServing) {
  if (record.msg === 'serving') {
    markServing(record.address);
    return;
  }
  if (record.msg !== 'raft role changed' || member.spec.group === undefined) return;
  const group = member.spec.group;
  if (record.role === 'leader') {
    leaders.set(group, { member: member.spec.name, term: record.term ?? null });
    console.log(`concord: ${member.spec.name} leads ${group} (term ${record.term ?? '?'})`);
  } else if (leaders.get(group)?.member === member.spec.name) {
    leaders.delete(group);
  }
  writeState();
}

/**
 * Reads the lines a process appends to its log file. The processes write their stdout straight
 * to the file, not through a pipe to this supervisor: should the supervisor die, a process
 * writing to a pipe nobody reads would block on its next log line, holding its ports.
 */
class LogTail {
  constructor(path, offset) {
    this.path = path;
    this.offset = offset;
    this.decoder = new StringDecoder('utf8');
    this.partial = '';
  }

  /** Calls `onLine` with each complete line appended since the last call. */
  poll(onLine) {
    let fd;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return;
    }
    try {
      const size = fstatSync(fd).size;
      const buffer = Buffer.alloc(64 * 1024);
      while (this.offset < size) {
        const read = readSync(fd, buffer, 0, Math.min(buffer.length, size - this.offset), this.offset);
        if (read <= 0) break;
        this.offset += read;
        this.partial += this.decoder.write(buffer.subarray(0, read));
      }
    } finally {
      closeSync(fd);
    }
    const lines = this.partial.split('\n');
    this.partial = lines.pop();
    for (const line of lines) onLine(line);
  }
}

/** Spawns a member; resolves with its address once it logs "serving", rejects if it ends first. */
function launch(member) {
  const { spec } = member;
  member.since = new Date().toISOString();
  appendFileSync(spec.logPath, `--- ${member.since} concord: starting ${spec.script} ${spec.args.join(' ')}\n`);
  const tail = new LogTail(spec.logPath, statSync(spec.logPath).size);
  const out = openSync(spec.logPath, 'a');
  let child;
  try {
    // Its own process group: Ctrl-C in the terminal reaches only this supervisor, which then
    // stops every process gracefully, one SIGTERM each.
    child = spawn(node, [...nodeFlags, '--import', '@concord/runtime/register', join(root, spec.script), ...spec.args], {
      cwd: root,
      env: childEnv({ CONCORD_SERVICE_NAME: spec.serviceName, ...(jaeger?.otelEnv ?? {}) }),
      stdio: ['ignore', out, 'pipe'],
      detached: true,
    });
  } finally {
    closeSync(out);
  }
  member.child = child;
  member.state = 'starting';
  member.exit = '';
  member.expectedExit = undefined;
  writeState();
  return new Promise((resolve, reject) => {
    const markServing = (address) => {
      member.state = 'running';
      writeState();
      resolve(address);
    };
    const onLine = (line) => {
      if (!line.startsWith('{')) return;
      let record;
      try {
        record = JSON.parse(line);
      } catch {
        return;
      }
      onLogRecord(member, record, markServing);
    };
    const poller = setInterval(() => tail.poll(onLine), LOG_POLL_MS);
    child.stderr.on('data', (chunk) => {
      appendFileSync(spec.logPath, chunk);
      process.stderr.write(`[${spec.name}] ${chunk}`);
    });
    child.on('error', (error) => reject(new Error(`${spec.name} could not be started: ${error.message}`)));
    child.on('exit', (code, signal) => {
      clearInterval(poller);
      tail.poll(onLine);
      const how = describeExit(code, signal);
      reject(new Error(`${spec.name} exited before serving (${how}); see ${shown(spec.logPath)}`));
      const expected = member.expectedExit;
      member.state = expected === 'stop' ? 'stopped' : expected === 'kill' ? 'killed' : 'dead';
      member.exit = how;
      member.since = new Date().toISOString();
      appendFileSync(spec.logPath, `--- ${member.since} concord: pid ${child.pid} ended (${how})\n`);
      if (spec.group !== undefined && leaders.get(spec.group)?.member === spec.name) leaders.delete(spec.group);
      if (shuttingDown) return;
      writeState();
      if (started && expected === undefined && code === 2) {
        // Exit 2 is a refusal to start (bad settings, or a data folder that lost the group's
        // state): restarting it the same way would only be refused again. Its log says why.
        console.error(`concord: ${spec.name} refused to start (${how}); the other processes keep running. Why: ${shown(spec.logPath)}`);
      } else if (started && expected === undefined) {
        console.error(
          `concord: ${spec.name} died (${how}); the other processes keep running. Its log: ${shown(spec.logPath)}\n` +
            `concord: bring it back with: ${localCommand('restart', spec.name)}`,
        );
      }
    });
  });
}

/** Resolves once the member's current process has ended (at once if none runs). */
function ended(member) {
  const child = member.child;
  if (child === undefined || !isRunning(member)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** SIGTERM, then SIGKILL after the grace period. */
async function stopMember(member, expectedExit = 'stop') {
  if (!isRunning(member)) return;
  member.expectedExit = expectedExit;
  const done = ended(member);
  const force = setTimeout(() => member.child.kill('SIGKILL'), STOP_GRACE_MS);
  member.child.kill('SIGTERM');
  await done;
  clearTimeout(force);
}

// ------------------------------------------------------------------ requests from `npm run local`

async function handleRequest(request) {
  const member = members.get(request.member);
  if (!MEMBER_ACTIONS.includes(request.action)) {
    return { ok: false, message: `unknown action ${JSON.stringify(request.action)}; one of ${MEMBER_ACTIONS.join(', ')}` };
  }
  if (member === undefined) {
    return { ok: false, message: `no member ${JSON.stringify(request.member)}; the members are ${[...members.keys()].join(', ')}` };
  }
  const { name } = member.spec;
  switch (request.action) {
    case 'kill': {
      if (!isRunning(member)) return { ok: false, message: `${name} is not running (${member.state}); bring it back with: ${localCommand('restart', name)}` };
      const pid = member.child.pid;
      member.expectedExit = 'kill';
      const done = ended(member);
      member.child.kill('SIGKILL');
      await done;
      console.log(`concord: killed ${name} (pid ${pid}) with SIGKILL, as asked; bring it back with: ${localCommand('restart', name)}`);
      return { ok: true, message: `killed ${name} (pid ${pid}) with SIGKILL; the other processes keep running.\nBring it back with: ${localCommand('restart', name)}` };
    }
    case 'stop': {
      if (!isRunning(member)) return { ok: false, message: `${name} is not running (${member.state})` };
      const pid = member.child.pid;
      await stopMember(member, 'stop');
      console.log(`concord: stopped ${name} (pid ${pid}), as asked; bring it back with: ${localCommand('restart', name)}`);
      return { ok: true, message: `stopped ${name} (pid ${pid}, ${member.exit}).\nBring it back with: ${localCommand('restart', name)}` };
    }
    case 'restart': {
      const wasRunning = isRunning(member);
      if (wasRunning) await stopMember(member, 'stop');
      try {
        const address = await launch(member);
        const what = `${name} ${wasRunning ? 'restarted' : 'is back'} (pid ${member.child.pid}), serving on ${address}`;
        console.log(`concord: ${what}`);
        const data = member.spec.dataDir === undefined ? '' : ` with its data in ${shown(member.spec.dataDir)}/`;
        return { ok: true, message: `${what}${data}; log: ${shown(member.spec.logPath)}` };
      } catch (error) {
        return { ok: false, message: error.message };
      }
    }
  }
  return { ok: false, message: 'unreachable' };
}

let handling = false;
async function pollRequests() {
  if (handling || shuttingDown) return;
  handling = true;
  try {
    for (const path of pendingRequests()) {
      let request;
      try {
        request = JSON.parse(readFileSync(path, 'utf8'));
      } catch {
        removeQuietly(path);
        continue;
      }
      removeQuietly(path);
      const response = await handleRequest(request).catch((error) => ({ ok: false, message: error.message }));
      if (typeof request.id === 'string' && /^[\w.-]+$/.test(request.id)) writeJsonAtomic(join(responsesDir, `${request.id}.json`), response);
    }
  } finally {
    handling = false;
  }
}

// ------------------------------------------------------------------ start and stop

async function stopAll(code) {
  if (shuttingDown) return;
  shuttingDown = true;
  clearInterval(requestTimer);
  console.log('\nconcord: stopping...');
  await Promise.all([...members.values()].map((member) => stopMember(member, 'stop')));
  // After the members: they flush their last spans to it as they stop.
  await stopJaeger();
  removeQuietly(stateFile);
  console.log('concord: stopped');
  process.exit(code);
}
const requestTimer = setInterval(() => void pollRequests(), REQUEST_POLL_MS);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => void stopAll(0));
// Last resort (an exception here): children in their own process groups would outlive us.
process.on('exit', () => {
  for (const member of members.values()) if (isRunning(member)) member.child.kill('SIGKILL');
  if (jaeger !== undefined && jaeger.child.exitCode === null && jaeger.child.signalCode === null) jaeger.child.kill('SIGKILL');
});

function portRange(group) {
  const ports = specs.filter((spec) => spec.group === group).map((spec) => spec.address.slice(spec.address.lastIndexOf(':') + 1));
  return ports.length > 1 ? `${ports[0]}–${ports[ports.length - 1]}` : ports[0];
}

async function waitForLeaders() {
  const deadline = Date.now() + LEADER_WAIT_MS;
  while (groupIds.some((group) => !leaders.has(group)) && Date.now() < deadline) await sleep(100);
  return groupIds.filter((group) => !leaders.has(group));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits until Cluster.GetRing answers on `address`: the meta group has a leader and holds the
 * ring, so the cluster is usable (a coordinator's "serving" line only means it recovered its own
 * log). Returns undefined when it answered, else the last error after RING_WAIT_MS.
 */
async function waitForRing(address) {
  // Loaded here, not at the top: these scripts must run before dependencies exist, and by now the
  // setup step has installed and built the SDK.
  const { ConcordClient } = await import('@concord/client');
  const client = await ConcordClient.connect({ address, routing: 'coordinator', deadlineMs: RING_PROBE_DEADLINE_MS });
  const deadline = Date.now() + RING_WAIT_MS;
  let last = 'no answer yet';
  try {
    while (!shuttingDown) {
      try {
        await client.ring();
        return undefined;
      } catch (error) {
        last = error.message;
      }
      if (Date.now() > deadline) return last;
      await sleep(RING_PROBE_PAUSE_MS);
    }
    return last;
  } finally {
    client.close();
  }
}

// ------------------------------------------------------------------ Jaeger

/**
 * Builds Jaeger if .tools/bin has none (or an older version), starts it in its own process group
 * with its output in .concord/logs/jaeger.log, and waits until its health check passes. Throws with
 * the log's tail when it cannot start (most often: a port is taken).
 */
async function startJaeger() {
  run('bash', [join(root, 'scripts', 'install-tools.sh'), 'jaeger']);
  const endpoints = jaegerEndpoints();
  appendFileSync(jaegerLogPath, `--- ${new Date().toISOString()} concord: starting ${jaegerBinary} --config ${jaegerConfig}\n`);
  const offset = statSync(jaegerLogPath).size;
  const out = openSync(jaegerLogPath, 'a');
  let child;
  try {
    child = spawn(jaegerBinary, ['--config', jaegerConfig], {
      cwd: root,
      env: childEnv(jaegerProcessEnv(endpoints)),
      stdio: ['ignore', out, out],
      detached: true,
    });
  } finally {
    closeSync(out);
  }
  const exited = new Promise((resolve) => {
    child.once('error', (error) => resolve(`could not be started: ${error.message}`));
    child.once('exit', (code, signal) => resolve(describeExit(code, signal)));
  });
  const logTail = () => {
    const lines = readFileSync(jaegerLogPath, 'utf8').slice(offset).trimEnd().split('\n');
    return lines.slice(-15).map((line) => `  ${line}`).join('\n');
  };
  let exit;
  void exited.then((how) => {
    exit = how;
  });
  const deadline = Date.now() + JAEGER_READY_MS;
  for (;;) {
    if (exit !== undefined) {
      const taken = readFileSync(jaegerLogPath, 'utf8').slice(offset).match(/listen tcp (\S+): bind: address already in use/);
      if (taken !== null) {
        const variable = Object.entries(jaegerProcessEnv(endpoints)).find(([, value]) => value === taken[1])?.[0] ?? 'its JAEGER_*_ENDPOINT variable';
        throw new Error(
          `jaeger cannot listen on ${taken[1]}: another program uses that port. Stop it, or move this listener with ` +
            `${variable}=127.0.0.1:<another port> npm start -- --jaeger (see docs/tracing.md).`,
        );
      }
      throw new Error(`jaeger ended (${exit}) before it was ready; its log, ${shown(jaegerLogPath)}, ends with:\n${logTail()}`);
    }
    try {
      const response = await fetch(`http://${endpoints.health}/status`, { signal: AbortSignal.timeout(1_000) });
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`jaeger was not healthy within ${JAEGER_READY_MS / 1000} s; see ${shown(jaegerLogPath)}:\n${logTail()}`);
    }
    await sleep(100);
  }
  // A Jaeger built from source with `go install` serves a placeholder page instead of the UI,
  // whose assets are compiled into release binaries only; the query API is complete either way.
  const withoutUi = readFileSync(jaegerLogPath, 'utf8').slice(offset).includes('ui assets not embedded');
  void exited.then((how) => {
    if (!shuttingDown) console.error(`concord: jaeger died (${how}); traces are no longer collected. Its log: ${shown(jaegerLogPath)}`);
  });
  return { child, exited, endpoints, otelEnv: otelEnvFor(endpoints), withoutUi };
}

async function stopJaeger() {
  if (jaeger === undefined || jaeger.child.exitCode !== null || jaeger.child.signalCode !== null) return;
  const force = setTimeout(() => jaeger.child.kill('SIGKILL'), STOP_GRACE_MS);
  jaeger.child.kill('SIGTERM');
  await jaeger.exited;
  clearTimeout(force);
}

function jaegerBanner() {
  if (jaeger === undefined) return '';
  const ui = `http://${jaeger.endpoints.queryHttp}`;
  const uiLine = jaeger.withoutUi
    ? `Jaeger (query API; this build has no web UI, see docs/tracing.md): ${ui}/api/traces?service=concord-coordinator`
    : `Jaeger UI: ${ui}  (search service concord-coordinator or concord-shard)`;
  return `
Traces: every process sends its spans to Jaeger (OTLP ${jaeger.endpoints.otlpGrpc} gRPC, ${jaeger.endpoints.otlpHttp} HTTP).
${uiLine}
Jaeger's log: ${shown(jaegerLogPath)}; its traces live in memory and go with it.
`;
}

function portOf(address) {
  return address.slice(address.lastIndexOf(':') + 1);
}

try {
  if (withJaeger) {
    jaeger = await startJaeger();
    writeState();
    console.log(`concord: jaeger is collecting traces; ${jaeger.withoutUi ? 'query API' : 'UI'} at http://${jaeger.endpoints.queryHttp}`);
  }
  const shards = [...members.values()].filter((member) => member.spec.kind === 'shard');
  await Promise.all(shards.map(launch));
  // The coordinators start together: each recovers its own log, then they elect a meta leader.
  const coordinatorMembers = [...members.values()].filter((member) => member.spec.kind === 'coordinator');
  await Promise.all(coordinatorMembers.map(launch));
  started = true;
  const address = coordinators[0];
  const ringProblem = await waitForRing(address);
  if (ringProblem !== undefined) {
    console.error(
      `concord: Cluster.GetRing on ${address} still fails after ${RING_WAIT_MS / 1000} s (${ringProblem}); ` +
        `\`npx concord status\` shows what each coordinator says, and .concord/logs/coordinator-*.log why.`,
    );
  }
  const leaderless = engine === 'raft' ? await waitForLeaders() : [];
  if (leaderless.length > 0) {
    console.error(`concord: no leader yet in ${leaderless.join(', ')} after ${LEADER_WAIT_MS / 1000} s; \`npx concord status\` shows what each replica says.`);
  }
  const replicas = shards.length / groupIds.length;
  const g1Leader = leaders.get(groupIds[0])?.member ?? `${groupIds[0]}-0`;
  const metaLeader = leaders.get(META_GROUP)?.member ?? coordinatorMembers[0].spec.name;
  const line = (command, what) => `  ${command.padEnd(39)}  ${what}`.trimEnd();
  console.log(`
Concord is running: coordinator at ${address}, one of the ${coordinators.length} coordinators of the meta group (ports ${coordinators.map(portOf).join(', ')});
any of them serves, a follower forwards to the meta leader. Shard groups ${groupIds.map((group) => `${group} (ports ${portRange(group)})`).join(', ')},
${engine === 'raft' ? `${replicas} Raft replicas each` : 'one replica each'}. One process per member. Data: .concord/<member>/   Logs: .concord/logs/<member>.log

Try, in another terminal at the repository root:
${line('npx concord kv put hello world', '')}
${line('npx concord kv get hello', '')}
${line('npx concord status', 'members, roles, terms, commit and applied indexes')}

Watch a failover:
${line(localCommand('kill', g1Leader), `SIGKILL the leader of ${groupIds[0]}; \`npx concord status\` shows the new one`)}
${line(localCommand('restart', g1Leader), 'bring it back; it catches up from the leader')}
${line(localCommand('kill', metaLeader), 'SIGKILL the meta leader; another coordinator takes over')}
${line('npm run local -- status', 'which processes run')}
With every coordinator in CONCORD_ADDR the CLI tries the next when one is down:
  export CONCORD_ADDR=${coordinators.join(',')}

Ctrl-C stops the cluster; data stays for the next \`npm start\` (\`npm start -- --fresh\` wipes it).
${jaegerBanner()}`);
} catch (error) {
  console.error(`concord: ${error.message}`);
  await stopAll(1);
}
