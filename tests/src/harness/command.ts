// Runs a short-lived command to completion with a time bound, capturing its output.
import { spawn } from 'node:child_process';
import { childEnv, repoRoot } from './paths.js';
import { track } from './reaper.js';

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Killed because it ran past timeoutMs. */
  timedOut: boolean;
  /** Killed because its output matched stopWhen. */
  stoppedEarly: boolean;
}

export interface CommandOptions {
  /** Extra environment variables (on top of the test's own). */
  env?: Readonly<Record<string, string>>;
  /** Default: the repository root. */
  cwd?: string;
  /** SIGKILL after this long; default 20 s. */
  timeoutMs?: number;
  /** SIGKILL as soon as stdout matches: for a process that should have refused to start but serves. */
  stopWhen?: RegExp;
}

export function runCommand(command: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? repoRoot,
      env: childEnv(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let stoppedEarly = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (options.stopWhen !== undefined && !stoppedEarly && options.stopWhen.test(stdout)) {
        stoppedEarly = true;
        child.kill('SIGKILL');
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 20_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, stoppedEarly });
    });
  });
}

/** A result as text, for assertion messages. */
export function describeResult(result: CommandResult): string {
  const how = result.timedOut ? 'timed out' : result.stoppedEarly ? 'was stopped (it started serving)' : result.signal !== null ? `died from ${result.signal}` : `exited ${result.code}`;
  return `${how}\n  stdout: ${indent(result.stdout)}\n  stderr: ${indent(result.stderr)}`;
}

function indent(text: string): string {
  const trimmed = text.trimEnd();
  return trimmed === '' ? '(empty)' : trimmed.split('\n').join('\n          ');
}
