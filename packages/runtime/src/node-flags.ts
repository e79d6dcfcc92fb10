// The V8 settings Concord's server processes run with, and the restart that applies them when a
// process was started without them (a V8 heap setting can only be given on node's command line:
// node refuses it in NODE_OPTIONS, and v8.setFlagsFromString is too late for the heap's sizes).
//
// Why --initial-old-space-size=128: V8 sets its old generation's limit after each full collection
// to a little above what survived it, and starts marking for the next one early when the room left
// under that limit is small next to its young generation. A replica keeps little on the heap (the
// shard's keys and values live off it), so with a live heap of about 20 MB the limit came out near
// 45 MB, and the followers of a busy group ran a full collection every 150 to 400 ms (traced with
// --trace-incremental-marking: each one started with 23 MB of room left), every pause of which holds
// up the acknowledgements of all the writes in flight. With a floor of 128 MB under that limit they
// run one every two seconds or so (prompted by off-heap memory), and scavenges in between
// (docs/performance.md, "the old generation's floor").

/** What a server process runs with unless CONCORD_NODE_FLAGS says otherwise. */
export const DEFAULT_SERVER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128'];

/** The environment variable that replaces DEFAULT_SERVER_NODE_FLAGS; empty for none. */
export const NODE_FLAGS_ENV = 'CONCORD_NODE_FLAGS';

/** The node flags a server process should run with: CONCORD_NODE_FLAGS split on spaces, or the default. */
export function serverNodeFlags(env: NodeJS.ProcessEnv): string[] {
  const configured = env[NODE_FLAGS_ENV];
  if (configured === undefined) return [...DEFAULT_SERVER_NODE_FLAGS];
  const flags = configured.split(/\s+/).filter((flag) => flag !== '');
  for (const flag of flags) {
    if (!flag.startsWith('--')) throw new Error(`${NODE_FLAGS_ENV}: "${flag}" is not a node flag (each must start with --)`);
  }
  return flags;
}

/** A flag's name as node compares it: before any "=", with underscores read as dashes. */
function flagName(flag: string): string {
  const equals = flag.indexOf('=');
  return (equals < 0 ? flag : flag.slice(0, equals)).replaceAll('_', '-');
}

/**
 * The flags of `wanted` that `execArgv` does not set. A flag counts as set when execArgv has one of
 * the same name, whatever its value: a setting given on the command line by hand wins.
 */
export function missingNodeFlags(wanted: readonly string[], execArgv: readonly string[]): string[] {
  const present = new Set(execArgv.filter((arg) => arg.startsWith('--')).map(flagName));
  return wanted.filter((flag) => !present.has(flagName(flag)));
}

/**
 * Replaces this process (same pid, same arguments and environment, via execve) with one started
 * with the server flags it lacks, so a supervisor's signals still reach it. Returns when there is
 * nothing to add; on a Node without process.execve it says on stderr what is missing and goes on.
 */
export function relaunchWithServerNodeFlags(role: string, env: NodeJS.ProcessEnv = process.env): void {
  const missing = missingNodeFlags(serverNodeFlags(env), process.execArgv);
  if (missing.length === 0) return;
  if (typeof process.execve !== 'function') {
    process.stderr.write(`concord ${role}: Node ${process.version} cannot restart itself with ${missing.join(' ')}; start it as node ${missing.join(' ')} ...\n`);
    return;
  }
  process.execve(process.execPath, [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)], definedEnv(env));
}

/** `env` without its undefined entries, as execve takes it. */
export function definedEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const defined: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (value !== undefined) defined[name] = value;
  return defined;
}
