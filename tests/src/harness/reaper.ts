// Last line of defence against leftover processes: whatever a test does (a failed assertion, an
// exception in a hook, the runner cancelling the file), every child still alive when this process
// ends gets SIGKILL. Normal cleanup happens in `after` hooks; this only catches what they miss.
import type { ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';

const liveChildren = new Set<ChildProcess>();
let installed = false;

function killAllNow(): void {
  for (const child of liveChildren) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  liveChildren.clear();
}

function install(): void {
  if (installed) return;
  installed = true;
  // 'exit' handlers may only do synchronous work; kill() is synchronous.
  process.once('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAllNow();
      process.exit(128 + (osConstants.signals[signal] ?? 0));
    });
  }
}

/** Registers a child so it is killed if this process ends before the child does. */
export function track(child: ChildProcess): void {
  install();
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}
