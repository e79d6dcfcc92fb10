// Where the repository is and what environment child processes get.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: this file runs from tests/dist/harness/. */
export const repoRoot: string = fileURLToPath(new URL('../../../', import.meta.url));

if (!existsSync(join(repoRoot, 'package.json')) || !existsSync(join(repoRoot, 'tests', 'package.json'))) {
  throw new Error(`tests harness: ${repoRoot} does not look like the repository root (expected package.json and tests/)`);
}

/**
 * The Node binary every Concord process of a test runs on. The test runner itself runs on the
 * pinned Node (`npm test` and `./node_modules/.bin/node --test`), so the running binary is the one.
 */
export const nodeBinary: string = process.execPath;

/**
 * The environment of a spawned process: the test's own, without the variable through which the
 * test runner recognises its workers (a child inheriting it would report to the runner as one),
 * and without CONCORD_* settings, so a developer's shell cannot fill in a flag a test leaves out.
 */
export function childEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  for (const name of Object.keys(env)) if (name.startsWith('CONCORD_')) delete env[name];
  return { ...env, ...extra };
}
