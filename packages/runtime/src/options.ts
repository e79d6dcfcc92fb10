// Turns command-line flags and environment variables into typed settings. Only a service's
// src/main.ts calls this; everything below it takes the typed options object.

/** One setting: read from `--<flag> value` / `--<flag>=value`, else from env `<env>`, else `default`. */
export type OptionSpec =
  | { kind: 'string'; flag: string; env?: string; default?: string; doc: string; pattern?: RegExp; patternDoc?: string }
  | { kind: 'int'; flag: string; env?: string; default?: number; doc: string; min?: number; max?: number }
  | { kind: 'bool'; flag: string; env?: string; default?: boolean; doc: string }
  | { kind: 'list'; flag: string; env?: string; default?: string[]; doc: string }
  | { kind: 'enum'; flag: string; env?: string; default?: string; doc: string; values: readonly string[] }
  | { kind: 'duration'; flag: string; env?: string; default?: number; doc: string; min?: number; max?: number };

export interface OptionSources {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
}

/** Thrown for a bad or missing setting; the message names the flag/env variable and what is allowed. */
export class OptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionsError';
  }
}

/** `flag` may be written with or without its leading dashes in a spec. */
function flagName(spec: OptionSpec): string {
  return spec.flag.replace(/^-+/, '');
}

/** Where a raw value came from, so an error names exactly what the user has to change. */
interface RawValue {
  text: string;
  origin: string;
}

/**
 * Reads every spec from the sources and returns typed values (durations in milliseconds, accepting
 * "250ms", "2s", "1m", "1h" or a plain number of ms). Precedence: flag, then env variable (an empty
 * variable counts as unset), then default. A spec without a default is required, except a bool,
 * which defaults to false. A list is comma-separated; a repeated list flag appends. Unknown flags
 * and positional arguments are rejected; `--help` is left to the caller.
 */
export function compileOptionSpecs<T extends Record<string, unknown>>(
  specs: { [K in keyof T]: OptionSpec },
  sources: OptionSources,
): T {
  const entries = Object.entries(specs) as [string, OptionSpec][];
  const byFlag = new Map<string, [string, OptionSpec]>();
  for (const entry of entries) {
    const name = flagName(entry[1]);
    // A duplicate flag is a bug in the caller's spec table, not bad user input.
    if (byFlag.has(name)) throw new Error(`option spec: flag --${name} is declared twice`);
    byFlag.set(name, entry);
  }

  const fromArgv = parseArgv(sources.argv, byFlag);
  const result: Record<string, unknown> = {};
  for (const [key, spec] of entries) {
    const flag = `--${flagName(spec)}`;
    const flagValues = fromArgv.get(key);
    if (flagValues !== undefined) {
      result[key] = convert(spec, flagValues);
      continue;
    }
    const envText = spec.env === undefined ? undefined : sources.env[spec.env];
    if (spec.env !== undefined && envText !== undefined && envText !== '') {
      result[key] = convert(spec, [{ text: envText, origin: `${spec.env} (for ${flag})` }]);
      continue;
    }
    if (spec.default !== undefined) {
      result[key] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
      continue;
    }
    if (spec.kind === 'bool') {
      result[key] = false;
      continue;
    }
    const envHint = spec.env === undefined ? '' : ` (or set ${spec.env})`;
    throw new OptionsError(`missing required option ${flag}${envHint}: ${spec.doc}`);
  }
  return result as T;
}

function parseArgv(argv: readonly string[], byFlag: ReadonlyMap<string, [string, OptionSpec]>): Map<string, RawValue[]> {
  const values = new Map<string, RawValue[]>();
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i] as string;
    if (!token.startsWith('--') || token === '--') {
      throw new OptionsError(`unexpected argument ${JSON.stringify(token)} (settings are given as --name value)`);
    }
    const equals = token.indexOf('=');
    const name = equals === -1 ? token.slice(2) : token.slice(2, equals);
    const entry = byFlag.get(name);
    if (entry === undefined) throw new OptionsError(`unknown option --${name}`);
    const [key, spec] = entry;
    let text: string;
    if (equals !== -1) {
      text = token.slice(equals + 1);
    } else if (spec.kind === 'bool') {
      // A bare bool flag means true; its value, if any, must be attached with '='.
      text = 'true';
    } else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new OptionsError(`--${name}: missing value`);
      text = next;
      i++;
    }
    const raw: RawValue = { text, origin: `--${name}` };
    const previous = values.get(key);
    if (previous !== undefined && spec.kind === 'list') previous.push(raw);
    else values.set(key, [raw]);
  }
  return values;
}

function convert(spec: OptionSpec, raws: readonly RawValue[]): unknown {
  if (spec.kind === 'list') {
    return raws.flatMap((raw) => raw.text.split(',').map((item) => item.trim()).filter((item) => item !== ''));
  }
  const raw = raws[raws.length - 1] as RawValue;
  const { text, origin } = raw;
  const fail = (what: string): never => {
    throw new OptionsError(`${origin}: ${what} (got ${JSON.stringify(text)})`);
  };
  switch (spec.kind) {
    case 'string':
      if (spec.pattern !== undefined && !spec.pattern.test(text)) fail(describeKind(spec));
      return text;
    case 'int': {
      const value = /^-?\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
      if (!Number.isSafeInteger(value) || (spec.min !== undefined && value < spec.min) || (spec.max !== undefined && value > spec.max)) {
        fail(describeKind(spec));
      }
      return value;
    }
    case 'bool': {
      const lowered = text.trim().toLowerCase();
      if (lowered === 'true' || lowered === '1' || lowered === 'yes') return true;
      if (lowered === 'false' || lowered === '0' || lowered === 'no') return false;
      return fail(describeKind(spec));
    }
    case 'enum':
      if (!spec.values.includes(text)) fail(describeKind(spec));
      return text;
    case 'duration': {
      const value = parseDuration(text);
      if (value === undefined || (spec.min !== undefined && value < spec.min) || (spec.max !== undefined && value > spec.max)) {
        fail(describeKind(spec));
      }
      return value;
    }
  }
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "250ms", "2s", "1.5s", "1m", "1h" or a plain number of milliseconds; undefined if malformed. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (match === null) return undefined;
  const ms = Number(match[1]) * (DURATION_UNITS_MS[match[2] ?? 'ms'] ?? 1);
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** Shows a millisecond count the way a user would write it ("250ms", "2s", "1m"). */
export function formatDuration(ms: number): string {
  if (ms !== 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms !== 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms !== 0 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** What a value of this spec must look like, phrased to follow "--flag: ". */
function describeKind(spec: OptionSpec): string {
  switch (spec.kind) {
    case 'string':
      return `must be ${spec.pattern === undefined ? 'a string' : (spec.patternDoc ?? `a string matching /${spec.pattern.source}/`)}`;
    case 'int':
      return `must be an integer${describeRange(spec.min, spec.max, String)}`;
    case 'bool':
      return 'must be true or false';
    case 'list':
      return 'must be a comma-separated list';
    case 'enum':
      return `must be one of ${spec.values.join(', ')}`;
    case 'duration':
      return `must be a duration such as 250ms, 2s or 1m${describeRange(spec.min, spec.max, formatDuration)}`;
  }
}

function describeRange(min: number | undefined, max: number | undefined, show: (n: number) => string): string {
  if (min !== undefined && max !== undefined) return ` between ${show(min)} and ${show(max)}`;
  if (min !== undefined) return ` of at least ${show(min)}`;
  if (max !== undefined) return ` of at most ${show(max)}`;
  return '';
}

function placeholder(spec: OptionSpec): string {
  switch (spec.kind) {
    case 'bool':
      return '';
    case 'enum':
      return ` <${spec.values.join('|')}>`;
    case 'list':
      return ' <a,b,...>';
    default:
      return ` <${spec.kind}>`;
  }
}

function formatDefault(spec: OptionSpec): string | undefined {
  if (spec.default === undefined) return spec.kind === 'bool' ? 'false' : undefined;
  switch (spec.kind) {
    case 'duration':
      return formatDuration(spec.default);
    case 'list':
      return spec.default.length === 0 ? '(empty)' : spec.default.join(',');
    case 'string':
      return spec.default === '' ? '(empty)' : spec.default;
    default:
      return String(spec.default);
  }
}

/** A help text listing every flag, env variable, default and doc line. */
export function formatOptionsHelp(specs: Record<string, OptionSpec>): string {
  const lines: string[] = [];
  for (const spec of Object.values(specs)) {
    lines.push(`  --${flagName(spec)}${placeholder(spec)}`);
    lines.push(`      ${spec.doc}`);
    const facts: string[] = [];
    if (spec.env !== undefined) facts.push(`env ${spec.env}`);
    const shownDefault = formatDefault(spec);
    facts.push(shownDefault === undefined ? 'required' : `default ${shownDefault}`);
    if (spec.kind === 'int' || spec.kind === 'duration') {
      const range = describeRange(spec.min, spec.max, spec.kind === 'int' ? String : formatDuration).trim();
      if (range !== '') facts.push(range);
    }
    lines.push(`      (${facts.join('; ')})`);
  }
  return lines.join('\n') + '\n';
}
