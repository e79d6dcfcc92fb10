// Keeps the README true: every command of the fenced block after the `<!-- readme-examples`
// comment runs against a real cluster, and its output must contain what the line's `# →` comment
// shows. `npx concord …` runs the CLI's bin (what npx resolves, see the first test) on the pinned
// Node; grpcurl lines run as written, with .tools/bin on PATH.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startLocalCluster, type LocalCluster } from './harness/cluster.js';
import { describeResult, runCommand } from './harness/command.js';
import { nodeBinary, repoRoot } from './harness/paths.js';

/** The address the README's examples use: the coordinator of `npm start`. */
const README_ADDRESS = '127.0.0.1:7070';
const MARKER = '<!-- readme-examples';
const EXPECTATION = '# →';
const TOOLS_BIN = join(repoRoot, '.tools', 'bin');
const INSTALL_HINT = 'run `bash scripts/install-tools.sh` (it installs grpcurl into .tools/bin)';

interface Example {
  line: number;
  command: string;
  expected: string;
}

/** The examples of the README, or why they could not be read. */
function readExamples(): { examples: Example[]; problem?: string } {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const lines = readme.split('\n');
  const markerLine = lines.findIndex((line) => line.trimStart().startsWith(MARKER));
  if (markerLine === -1) return { examples: [], problem: `README.md has no "${MARKER}" comment` };
  // The fence must follow the comment directly, so the comment cannot drift away from its block.
  const fence = markerLine + 1;
  if (lines[fence]?.trim() !== '```sh') return { examples: [], problem: `README.md line ${fence + 1} should open the \`\`\`sh block the examples comment announces` };
  const examples: Example[] = [];
  for (let index = fence + 1; index < lines.length; index++) {
    const text = lines[index]!;
    if (text.trim() === '```') return examples.length > 0 ? { examples } : { examples, problem: 'the README examples block is empty' };
    if (text.trim() === '') continue;
    const at = text.indexOf(EXPECTATION);
    if (at === -1) return { examples, problem: `README.md line ${index + 1} has no "${EXPECTATION} expected output" comment: ${text}` };
    examples.push({ line: index + 1, command: text.slice(0, at).trim(), expected: text.slice(at + EXPECTATION.length).trim() });
  }
  return { examples, problem: 'the README examples block is never closed' };
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** The line as it runs here: against the test cluster, the CLI on the pinned Node. */
function toShellCommand(command: string, address: string): string {
  const pointed = command.replaceAll(README_ADDRESS, address);
  const cli = /^npx concord(?=\s|$)/;
  if (cli.test(pointed)) return pointed.replace(cli, `${shellQuote(nodeBinary)} packages/cli/bin/concord.js`);
  if (/^grpcurl(?=\s|$)/.test(pointed)) return pointed;
  throw new Error(`this test runs \`npx concord …\` and \`grpcurl …\` lines; teach it how to run: ${command}`);
}

const { examples, problem } = readExamples();
const shellPath = `${TOOLS_BIN}:${process.env['PATH'] ?? ''}`;

describe('README examples run against a real cluster', () => {
  let cluster: LocalCluster;
  let grpcurlFound = false;

  before(async () => {
    const probe = await runCommand('bash', ['-c', 'command -v grpcurl'], { env: { PATH: shellPath } });
    grpcurlFound = probe.code === 0;
    cluster = await startLocalCluster({ groups: ['g1', 'g2', 'g3'] });
  });

  after(async () => {
    await cluster?.stop();
  });

  it('README.md has an examples block, and `npx concord` resolves to the CLI these tests run', () => {
    assert.equal(problem, undefined, problem);
    const npxBin = join(repoRoot, 'node_modules', '.bin', 'concord');
    assert.ok(existsSync(npxBin), 'node_modules/.bin/concord is missing: run `npm install` at the repository root');
    assert.equal(realpathSync(npxBin), realpathSync(join(repoRoot, 'packages', 'cli', 'bin', 'concord.js')));
  });

  for (const example of examples) {
    it(`README line ${example.line}: ${example.command}`, async () => {
      if (/^grpcurl(?=\s|$)/.test(example.command)) {
        assert.ok(grpcurlFound, `grpcurl is not on PATH nor in .tools/bin: ${INSTALL_HINT}`);
      }
      const shellCommand = toShellCommand(example.command, cluster.coordinatorAddress);
      const result = await runCommand('bash', ['-c', shellCommand], {
        env: { PATH: shellPath, CONCORD_ADDR: cluster.coordinatorAddress },
        timeoutMs: 30_000,
      });
      const shown = `\`${shellCommand}\` ${describeResult(result)}`;
      assert.equal(result.code, 0, `README line ${example.line} should exit 0: ${shown}`);
      assert.ok(result.stdout.includes(example.expected), `README line ${example.line} should print ${JSON.stringify(example.expected)}: ${shown}`);
    });
  }
});
