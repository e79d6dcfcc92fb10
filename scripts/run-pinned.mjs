// Runs a built entry point on the pinned Node: `node scripts/run-pinned.mjs <file> [args...]`.
import { spawnSync } from 'node:child_process';
import { childEnv, pinnedNode, root } from './lib.mjs';

const [file, ...args] = process.argv.slice(2);
if (!file) {
  console.error('usage: run-pinned.mjs <file> [args...]');
  process.exit(2);
}
const result = spawnSync(pinnedNode(), [file, ...args], { cwd: root, stdio: 'inherit', env: childEnv() });
process.exit(result.status ?? 1);
