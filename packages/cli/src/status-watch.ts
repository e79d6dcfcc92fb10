// `concord status --watch`: the status view again every few seconds, like watch(1) or
// `kubectl get --watch`, until Ctrl-C or --count snapshots. On a terminal each snapshot replaces
// the previous one on the screen; into a pipe or a file they follow one another, separated by a
// blank line, so a drill can be recorded and read afterwards.
import { setTimeout as sleep } from 'node:timers/promises';

/** Moves the cursor to the top left corner and erases the screen (ECMA-48 CUP and ED 2). */
export const CLEAR_SCREEN = '\x1b[H\x1b[2J';

/** Default refresh of `--watch` without a value, in seconds (watch(1) uses the same). */
export const DEFAULT_WATCH_SECONDS = 2;

/**
 * Shortest refresh accepted: every snapshot asks every member of every group, so a tighter loop
 * would mostly measure itself.
 */
export const MIN_WATCH_SECONDS = 0.1;

/** One snapshot as printed: the view, or what replaced it when the cluster could not be asked. */
export interface Snapshot {
  text: string;
  /** false when `text` reports a failure (no coordinator answered, …). */
  ok: boolean;
}

export interface WatchOptions {
  /** Takes one snapshot. It reports a failure as a snapshot ({ok: false}) rather than throwing. */
  snapshot(): Promise<Snapshot>;
  /** Time from the start of one snapshot to the start of the next. */
  intervalMs: number;
  /** Stop after this many snapshots; undefined: until `signal` aborts. */
  count?: number;
  out: NodeJS.WritableStream;
  /** Clear the screen before each snapshot (stdout is a terminal); otherwise separate them by a blank line. */
  clearScreen: boolean;
  /** Aborted on SIGINT: the watch ends at once, without waiting for a snapshot in progress. */
  signal: AbortSignal;
  /** A first line for each snapshot, e.g. the refresh interval and the time it was taken. */
  heading?: () => string;
}

export interface WatchResult {
  /** Snapshots printed. */
  snapshots: number;
  /** How many of them reported a failure. */
  failures: number;
}

/** Runs the watch loop; resolves when `count` snapshots are printed or `signal` aborts. */
export async function watchStatus(options: WatchOptions): Promise<WatchResult> {
  const { out, signal } = options;
  const result: WatchResult = { snapshots: 0, failures: 0 };
  const aborted = new Promise<undefined>((resolve) => {
    if (signal.aborted) resolve(undefined);
    else signal.addEventListener('abort', () => resolve(undefined), { once: true });
  });
  while (!signal.aborted && (options.count === undefined || result.snapshots < options.count)) {
    const started = performance.now();
    const snapshot = await Promise.race([options.snapshot(), aborted]);
    if (snapshot === undefined) break;
    const heading = options.heading === undefined ? '' : `${options.heading()}\n`;
    const separator = options.clearScreen ? CLEAR_SCREEN : result.snapshots > 0 ? '\n' : '';
    out.write(`${separator}${heading}${snapshot.text}`);
    result.snapshots += 1;
    if (!snapshot.ok) result.failures += 1;
    if (options.count !== undefined && result.snapshots >= options.count) break;
    const waitMs = Math.max(0, options.intervalMs - (performance.now() - started));
    try {
      await sleep(waitMs, undefined, { signal });
    } catch {
      break; // aborted while waiting
    }
  }
  return result;
}

/** `--watch [seconds]` as commander hands it over: true without a value, else the text given. */
export function parseWatchSeconds(value: string | true): number {
  if (value === true) return DEFAULT_WATCH_SECONDS;
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds < MIN_WATCH_SECONDS) {
    throw new Error(`--watch: seconds between refreshes must be a number of at least ${MIN_WATCH_SECONDS} (got "${value}")`);
  }
  return seconds;
}

/** `--count <n>`: how many snapshots `--watch` prints before it ends, at least 1. */
export function parseWatchCount(value: string): number {
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1) throw new Error(`--count: must be a whole number of snapshots, at least 1 (got "${value}")`);
  return count;
}
