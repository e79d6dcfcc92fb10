import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';

/**
 * Starts a process that installs onShutdownSignals with the given handler body, waits until it is
 * ready, sends it the signals and returns its exit code and output.
 */
async function runWithSignals(handlerBody: string, signals: NodeJS.Signals[]): Promise<{ code: number | null; output: string }> {
  const runtimeUrl = new URL('./index.js', import.meta.url).href;
  const program = `
    const { onShutdownSignals, createLogger } = await import(${JSON.stringify(runtimeUrl)});
    const logger = createLogger({ service: 'signals-test' });
    onShutdownSignals(async () => { ${handlerBody} }, logger);
    setInterval(() => {}, 1000);
    console.log('ready');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', program], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'exit') as Promise<[number | null]>;
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  try {
    for (let i = 0; i < 200 && !output.includes('ready'); i++) await new Promise((resolve) => setTimeout(resolve, 25));
    assert.ok(output.includes('ready'), output);
    for (const signal of signals) {
      child.kill(signal);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const [code] = await exited;
    return { code, output };
  } finally {
    clearTimeout(killer);
  }
}

test('SIGTERM runs the handler once and exits 0', async () => {
  const { code, output } = await runWithSignals("console.log('handler ran');", ['SIGTERM']);
  assert.equal(code, 0, output);
  assert.equal(output.split('handler ran').length - 1, 1);
  assert.match(output, /"msg":"shutting down"/);
});

test('a failing handler exits 1 and logs why', async () => {
  const { code, output } = await runWithSignals("throw new Error('flush failed');", ['SIGINT']);
  assert.equal(code, 1, output);
  assert.match(output, /flush failed/);
});

test('a second signal while the handler runs exits at once', async () => {
  const { code, output } = await runWithSignals("console.log('handler ran'); await new Promise(() => {});", ['SIGTERM', 'SIGTERM']);
  assert.equal(code, 128 + 15, output);
  assert.equal(output.split('handler ran').length - 1, 1);
});

test('SIGTERM still stops a process whose log reader went away (its log lines fail with EPIPE)', async () => {
  const runtimeUrl = new URL('./index.js', import.meta.url).href;
  const program = `
    const { onShutdownSignals, createLogger } = await import(${JSON.stringify(runtimeUrl)});
    const logger = createLogger({ service: 'signals-test' });
    onShutdownSignals(async () => { logger.info('handler ran'); }, logger);
    setInterval(() => logger.info('still here'), 20);
    process.stderr.write('ready\\n');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', program], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let errors = '';
  child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  try {
    for (let i = 0; i < 200 && !errors.includes('ready'); i++) await new Promise((resolve) => setTimeout(resolve, 25));
    assert.ok(errors.includes('ready'), errors);
    // The reader of its stdout goes away: every later log line meets a closed pipe.
    child.stdout.destroy();
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGTERM');
    const [code, signal] = await exited;
    assert.equal(signal, null, `ended by ${String(signal)}: it did not stop on SIGTERM within 20 s; stderr: ${errors}`);
    assert.equal(code, 0, errors);
  } finally {
    clearTimeout(killer);
  }
});
