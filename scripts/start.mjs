// `npm start`: sets the working copy up, then runs a local Concord cluster — a coordinator and the
// shard groups of deploy/local/cluster.json — as separate processes on 127.0.0.1, with data under
// .concord/ (kept across restarts; `npm start -- --fresh` wipes it). Ctrl-C stops everything.
// Each process logs JSON to .concord/logs/<name>.log; this script prints only lifecycle events.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { childEnv, ensureSetup, pinnedNode, root } from './lib.mjs';

const args = process.argv.slice(2);
if (args.includes('--help')) {
  console.log(`usage: npm start [-- --fresh] [-- --skip-setup]
  --fresh       wipe .concord/ (all local data) before starting
  --skip-setup  do not install/generate/build first`);
  process.exit(0);
}
const config = JSON.parse(readFileSync(join(root, 'deploy', 'local', 'cluster.json'), 'utf8'));
const dataRoot = join(root, '.concord');

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
mkdirSync(join(dataRoot, 'logs'), { recursive: true });

const node = pinnedNode();
const groupIds = config.shardGroups.map((g) => g.id);
const processes = [];
let stopping = false;

function startProcess(name, script, flags, serviceName) {
  const logPath = join(dataRoot, 'logs', `${name}.log`);
  const log = createWriteStream(logPath, { flags: 'a' });
  const child = spawn(node, ['--import', '@concord/runtime/register', join(root, script), ...flags], {
    cwd: root,
    env: childEnv({ CONCORD_SERVICE_NAME: serviceName }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const entry = { name, child, logPath, ready: undefined };
  entry.ready = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      log.write(`${line}\n`);
      try {
        const record = JSON.parse(line);
        if (record.msg === 'serving') resolve(record.address);
      } catch {
        // Not JSON: keep it in the log only.
      }
    });
    child.stderr.on('data', (chunk) => {
      log.write(chunk);
      process.stderr.write(`[${name}] ${chunk}`);
    });
    child.on('exit', (code, signal) => {
      reject(new Error(`${name} exited before serving (${signal ?? `exit ${code}`}); see ${logPath}`));
      if (!stopping) {
        console.error(
          `concord: ${name} died (${signal ?? `exit ${code}`}); the other processes keep running. ` +
            `Its log: ${logPath}. Restart the cluster with \`npm start -- --skip-setup\` to bring it back with its data.`,
        );
      }
    });
  });
  processes.push(entry);
  return entry;
}

const shards = config.shardGroups.map((g) =>
  startProcess(`shard-${g.id}`, 'services/shard/dist/main.js', [
    '--group-id', g.id,
    '--listen', g.listen,
    '--data-dir', join(dataRoot, g.id),
    '--ring-groups', groupIds.join(','),
    '--ring-vnodes', String(config.ringVnodes),
    '--ring-epoch', String(config.ringEpoch),
  ], 'concord-shard'),
);
const coordinator = startProcess('coordinator', 'services/coordinator/dist/main.js', [
  '--listen', config.coordinator.listen,
  '--groups', config.shardGroups.map((g) => `${g.id}=${g.listen}`).join(','),
  '--ring-vnodes', String(config.ringVnodes),
  '--ring-epoch', String(config.ringEpoch),
], 'concord-coordinator');

async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  console.log('\nconcord: stopping...');
  await Promise.all(
    processes.map(
      ({ child }) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
          child.once('exit', () => {
            clearTimeout(force);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
  console.log('concord: stopped');
  process.exit(code);
}
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));

try {
  const shardAddresses = await Promise.all(shards.map((s) => s.ready));
  const address = await coordinator.ready;
  console.log(`
Concord is running: coordinator at ${address}, shard groups ${groupIds.map((g, i) => `${g}@${shardAddresses[i]}`).join(', ')}.
Data: .concord/   Logs: .concord/logs/

Try, in another terminal at the repository root:
  npx concord kv put hello world
  npx concord kv get hello
  npx concord status

or with grpcurl:
  grpcurl -plaintext -d '{"key":"a","value":"aGk="}' ${address} concord.v1.KV/Put

Ctrl-C stops the cluster; data stays for the next \`npm start\` (\`npm start -- --fresh\` wipes it).
`);
} catch (error) {
  console.error(`concord: ${error.message}`);
  await stopAll(1);
}
