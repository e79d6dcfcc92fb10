// `npm run local -- <command>`: controls the local cluster that `npm start` runs, from another
// terminal. Killing and restarting go through the running supervisor (scripts/start.mjs), by a
// request file in .concord/control/requests/: the supervisor owns every process, so a restarted
// member is its child like the others, its death is reported there, and Ctrl-C still stops it.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import {
  MEMBER_ACTIONS,
  ensureControlDirs,
  isAliveRunning,
  localCommand,
  readState,
  removeQuietly,
  requestsDir,
  responsesDir,
  writeJsonAtomic,
} from './local-cluster.mjs';

/** A restart may wait out a graceful stop (10 s) and a start (recovery of the member's log). */
const RESPONSE_TIMEOUT_MS = 90_000;
const POLL_MS = 100;

const USAGE = `usage: npm run local -- <command>

Controls the local cluster of \`npm start\` (run it in another terminal first).

  status              every process: state, pid, address, and each group's leader as last logged
  kill <member>       SIGKILL one process, e.g. g1-0 or coordinator-1 (a crash, for demos)
  stop <member>       stop one process gracefully (SIGTERM)
  restart <member>    start a member that is down, or restart one that runs; it keeps its data

Members are named as in deploy/local/cluster.json: coordinator-0 … coordinator-2 (the meta group)
and g1-0 … g3-2.
\`npx concord status\` shows terms, commit and applied indexes.`;

function fail(message, code = 1) {
  console.error(`concord: ${message}`);
  process.exit(code);
}

/** The running supervisor's state, or exits saying that none runs. */
function runningSupervisor() {
  const state = readState();
  if (state === undefined || !isAliveRunning(state.pid, 'scripts/start.mjs')) {
    fail('no local cluster is running: start one with `npm start` (in another terminal)');
  }
  return state;
}

function age(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  return `${Math.round(seconds / 3600)}h`;
}

function printStatus(state) {
  const leaderOf = new Map(Object.entries(state.leaders ?? {}).map(([group, leader]) => [leader.member, { group, term: leader.term }]));
  const rows = state.members.map((member) => {
    const leader = leaderOf.get(member.name);
    const role = leader !== undefined ? `leader (term ${leader.term ?? '?'})` : member.state === 'running' ? 'follower' : '';
    const what = member.state === 'running' || member.state === 'starting' ? member.state : `${member.state}${member.exit ? ` (${member.exit})` : ''}`;
    const hint = member.state === 'running' || member.state === 'starting' ? '' : `→ ${localCommand('restart', member.name)}`;
    return [member.name, member.group ?? '', member.address, member.pid === null ? '-' : String(member.pid), role, `${what} ${age(member.since)}`, hint];
  });
  const head = ['MEMBER', 'GROUP', 'ADDRESS', 'PID', 'ROLE', 'STATE', ''];
  const widths = head.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  const format = (row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd();
  console.log(`local cluster: supervisor pid ${state.pid}, up ${age(state.startedAt)}, engine ${state.engine}`);
  console.log(format(head));
  for (const row of rows) console.log(format(row));
  console.log('\nRoles are as the members last logged them; `npx concord status` asks every replica now.');
}

async function ask(state, action, member) {
  ensureControlDirs();
  const id = `${Date.now()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const responsePath = join(responsesDir, `${id}.json`);
  writeJsonAtomic(join(requestsDir, `${id}.json`), { id, action, member });
  const deadline = Date.now() + RESPONSE_TIMEOUT_MS;
  for (;;) {
    if (existsSync(responsePath)) {
      let response;
      try {
        response = JSON.parse(readFileSync(responsePath, 'utf8'));
      } finally {
        removeQuietly(responsePath);
      }
      if (!response.ok) fail(response.message);
      console.log(response.message);
      return;
    }
    if (!isAliveRunning(state.pid, 'scripts/start.mjs')) {
      removeQuietly(join(requestsDir, `${id}.json`));
      fail(`the supervisor (pid ${state.pid}) ended before answering`);
    }
    if (Date.now() > deadline) {
      removeQuietly(join(requestsDir, `${id}.json`));
      fail(`no answer from the supervisor (pid ${state.pid}) within ${RESPONSE_TIMEOUT_MS / 1000} s; see its terminal`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

const [command, ...rest] = process.argv.slice(2);
if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
  console.log(USAGE);
  process.exit(command === undefined ? 2 : 0);
}
if (command === 'status') {
  if (rest.length > 0) fail(`status takes no arguments (got ${rest.join(' ')})`, 2);
  printStatus(runningSupervisor());
} else if (MEMBER_ACTIONS.includes(command)) {
  if (rest.length !== 1) fail(`${command} takes one member, e.g. ${localCommand(command, 'g1-0')}`, 2);
  const state = runningSupervisor();
  const member = rest[0];
  const names = state.members.map((each) => each.name);
  if (!names.includes(member)) fail(`no member ${JSON.stringify(member)}; the members are ${names.join(', ')}`, 2);
  await ask(state, command, member);
} else {
  fail(`unknown command ${JSON.stringify(command)}\n${USAGE}`, 2);
}
