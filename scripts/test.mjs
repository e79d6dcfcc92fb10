// `npm test`: checks the contracts (buf lint, generated code in sync), then runs every test file
// (unit tests beside the code, cross-process tests in tests/) with Node's test runner on the pinned
// Node. Extra arguments are passed to `node --test` (e.g. `npm test -- --test-name-pattern=ring`).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { childEnv, pinnedNode, root, run } from './lib.mjs';

// Machine tools the tests use (grpcurl runs the README's examples); idempotent and quick once installed.
run('bash', [join(root, 'scripts', 'install-tools.sh')]);
run(pinnedNode(), [join(root, 'scripts', 'gen.mjs'), '--check']);

function testFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...testFiles(p));
    else if (name.endsWith('.test.js')) out.push(relative(root, p));
  }
  return out;
}

const roots = ['packages', 'services'].flatMap((top) =>
  readdirSync(join(root, top)).map((name) => join(root, top, name, 'dist')),
);
roots.push(join(root, 'tests', 'dist'), join(root, 'bench', 'dist'));
const files = roots.flatMap(testFiles).sort();
if (files.length === 0) {
  console.error('no test files found: did the build run?');
  process.exit(1);
}
const extra = process.argv.slice(2);
const result = spawnSync(pinnedNode(), ['--test', '--test-reporter=spec', ...extra, ...files], {
  cwd: root,
  stdio: 'inherit',
  env: childEnv({ PATH: `${join(root, '.tools', 'bin')}:${childEnv().PATH}` }),
});
process.exit(result.status ?? 1);
