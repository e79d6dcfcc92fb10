// Shared helpers of the repository scripts. These scripts run on whatever Node the machine has
// (>= 20), before dependencies exist, so they use only Node's standard library.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
const binDir = join(root, 'node_modules', '.bin');

/**
 * The Node binary Concord runs on: the one pinned by the `node` devDependency (the current LTS
 * line), so every machine runs the same runtime whatever its system Node is. Falls back to the Node
 * running this script when dependencies are not installed yet.
 */
export function pinnedNode() {
  const pinned = join(binDir, 'node');
  return existsSync(pinned) ? pinned : process.execPath;
}

/** Environment for child processes: project binaries (and the pinned node) first on PATH. */
export function childEnv(extra = {}) {
  return { ...process.env, PATH: `${binDir}:${process.env.PATH ?? ''}`, ...extra };
}

export function run(command, args, { quiet = false, env } = {}) {
  const result = spawnSync(command, args, { cwd: root, stdio: quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit', env: env ?? childEnv() });
  if (result.status !== 0) {
    if (quiet) {
      process.stderr.write(result.stdout ?? '');
      process.stderr.write(result.stderr ?? '');
    }
    const what = `${command} ${args.join(' ')}`;
    throw new Error(`\`${what}\` failed (${result.status === null ? `signal ${result.signal}` : `exit ${result.status}`})`);
  }
  return result;
}

function hashFiles(paths) {
  const hash = createHash('sha256');
  for (const p of paths) {
    hash.update(p);
    hash.update(existsSync(p) ? readFileSync(p) : Buffer.alloc(0));
  }
  return hash.digest('hex');
}

function listProtoFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listProtoFiles(p));
    else if (name.endsWith('.proto') || name.endsWith('.yaml')) out.push(p);
  }
  return out.sort();
}

/**
 * Makes the working copy ready to run: installs dependencies when the lockfile changed (or none are
 * installed), regenerates code when the protos changed, and builds incrementally.
 */
export function ensureSetup({ quiet = false } = {}) {
  const log = (msg) => {
    if (!quiet) console.log(`concord setup: ${msg}`);
  };
  const stamp = join(root, 'node_modules', '.concord-install-stamp');
  const lockHash = hashFiles([join(root, 'package-lock.json'), join(root, 'package.json')]);
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== lockHash) {
    log('installing dependencies (npm ci)');
    run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { quiet });
    writeFileSync(stamp, lockHash);
  }
  const genStamp = join(root, 'node_modules', '.concord-gen-stamp');
  const protoHash = hashFiles([...listProtoFiles(join(root, 'proto')), join(root, 'buf.gen.yaml')]);
  if (!existsSync(genStamp) || readFileSync(genStamp, 'utf8') !== protoHash) {
    log('generating code from proto/');
    run(pinnedNode(), [join(root, 'scripts', 'gen.mjs')], { quiet });
    writeFileSync(genStamp, protoHash);
  }
  log('building (tsc -b)');
  run(pinnedNode(), [join(binDir, 'tsc'), '-b'], { quiet });
}
