import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OptionsError, compileOptionSpecs, formatOptionsHelp, parseDuration, type OptionSpec } from './options.js';

interface ShardOptions extends Record<string, unknown> {
  host: string;
  port: number;
  dataDir: string;
  peers: string[];
  fsync: boolean;
  logLevel: string;
  electionTimeoutMs: number;
  memberId: string;
}

const specs: { [K in keyof ShardOptions]: OptionSpec } = {
  host: { kind: 'string', flag: 'host', env: 'CONCORD_HOST', default: '127.0.0.1', doc: 'Interface to listen on.' },
  port: { kind: 'int', flag: 'port', env: 'CONCORD_PORT', default: 7000, min: 0, max: 65535, doc: 'gRPC port; 0 picks a free one.' },
  dataDir: { kind: 'string', flag: 'data-dir', env: 'CONCORD_DATA_DIR', doc: 'Directory of the WAL and snapshots.' },
  peers: { kind: 'list', flag: 'peers', env: 'CONCORD_PEERS', default: [], doc: 'Addresses of the other members.' },
  fsync: { kind: 'bool', flag: 'fsync', env: 'CONCORD_FSYNC', default: true, doc: 'fsync the WAL before acknowledging.' },
  logLevel: { kind: 'enum', flag: 'log-level', env: 'CONCORD_LOG_LEVEL', default: 'info', values: ['debug', 'info', 'warn', 'error'], doc: 'Log level.' },
  electionTimeoutMs: { kind: 'duration', flag: 'election-timeout', env: 'CONCORD_ELECTION_TIMEOUT', default: 1000, min: 100, max: 10_000, doc: 'Raft election timeout.' },
  memberId: { kind: 'string', flag: 'member-id', default: 'm1', pattern: /^[a-z0-9-]+$/, patternDoc: 'lowercase letters, digits and dashes', doc: 'Member id.' },
};

function compile(argv: string[], env: Record<string, string> = {}): ShardOptions {
  return compileOptionSpecs<ShardOptions>(specs, { argv, env });
}

function optionsError(message: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof OptionsError);
    assert.equal(error.message, message);
    return true;
  };
}

test('defaults fill every setting not given', () => {
  assert.deepEqual(compile(['--data-dir', '/data']), {
    host: '127.0.0.1',
    port: 7000,
    dataDir: '/data',
    peers: [],
    fsync: true,
    logLevel: 'info',
    electionTimeoutMs: 1000,
    memberId: 'm1',
  });
});

test('flags as "--name value" and "--name=value"', () => {
  const options = compile(['--data-dir=/d', '--port', '7100', '--peers=a:1,b:2', '--log-level', 'debug', '--host=0.0.0.0']);
  assert.equal(options.dataDir, '/d');
  assert.equal(options.port, 7100);
  assert.deepEqual(options.peers, ['a:1', 'b:2']);
  assert.equal(options.logLevel, 'debug');
  assert.equal(options.host, '0.0.0.0');
});

test('bool flags: bare means true, =false turns off', () => {
  assert.equal(compile(['--data-dir=/d', '--fsync']).fsync, true);
  assert.equal(compile(['--data-dir=/d', '--fsync=false']).fsync, false);
  assert.equal(compile(['--data-dir=/d'], { CONCORD_FSYNC: 'false' }).fsync, false);
  assert.throws(() => compile(['--data-dir=/d', '--fsync=maybe']), optionsError('--fsync: must be true or false (got "maybe")'));
});

test('env variables are the fallback; flags win; empty env counts as unset', () => {
  const env = { CONCORD_DATA_DIR: '/env', CONCORD_PORT: '7200', CONCORD_PEERS: 'x:1, y:2', CONCORD_HOST: '' };
  const fromEnv = compile([], env);
  assert.equal(fromEnv.dataDir, '/env');
  assert.equal(fromEnv.port, 7200);
  assert.deepEqual(fromEnv.peers, ['x:1', 'y:2']);
  assert.equal(fromEnv.host, '127.0.0.1');
  assert.equal(compile(['--port', '7300'], env).port, 7300);
});

test('a missing required setting names the flag and the env variable', () => {
  assert.throws(() => compile([]), optionsError('missing required option --data-dir (or set CONCORD_DATA_DIR): Directory of the WAL and snapshots.'));
});

test('bad numbers name the flag, the range and the value', () => {
  assert.throws(() => compile(['--data-dir=/d', '--port', 'abc']), optionsError('--port: must be an integer between 0 and 65535 (got "abc")'));
  assert.throws(() => compile(['--data-dir=/d', '--port=70000']), optionsError('--port: must be an integer between 0 and 65535 (got "70000")'));
  assert.throws(() => compile(['--data-dir=/d', '--port=1.5']), optionsError('--port: must be an integer between 0 and 65535 (got "1.5")'));
  assert.throws(() => compile(['--data-dir=/d'], { CONCORD_PORT: 'x' }), optionsError('CONCORD_PORT (for --port): must be an integer between 0 and 65535 (got "x")'));
});

test('enums list the allowed values', () => {
  assert.throws(() => compile(['--data-dir=/d', '--log-level=loud']), optionsError('--log-level: must be one of debug, info, warn, error (got "loud")'));
});

test('string patterns are described', () => {
  assert.throws(() => compile(['--data-dir=/d', '--member-id=M_1']), optionsError('--member-id: must be lowercase letters, digits and dashes (got "M_1")'));
});

test('durations accept ms, s, m or plain milliseconds, within bounds', () => {
  assert.equal(compile(['--data-dir=/d', '--election-timeout=250ms']).electionTimeoutMs, 250);
  assert.equal(compile(['--data-dir=/d', '--election-timeout=2s']).electionTimeoutMs, 2000);
  assert.equal(compile(['--data-dir=/d', '--election-timeout=1.5s']).electionTimeoutMs, 1500);
  assert.equal(compile(['--data-dir=/d', '--election-timeout=300']).electionTimeoutMs, 300);
  assert.equal(compile(['--data-dir=/d'], { CONCORD_ELECTION_TIMEOUT: '5s' }).electionTimeoutMs, 5000);
  assert.throws(
    () => compile(['--data-dir=/d', '--election-timeout=1m']),
    optionsError('--election-timeout: must be a duration such as 250ms, 2s or 1m between 100ms and 10s (got "1m")'),
  );
  assert.throws(
    () => compile(['--data-dir=/d', '--election-timeout=soon']),
    optionsError('--election-timeout: must be a duration such as 250ms, 2s or 1m between 100ms and 10s (got "soon")'),
  );
  assert.equal(parseDuration('1m'), 60_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('-1s'), undefined);
  assert.equal(parseDuration(''), undefined);
});

test('a repeated list flag appends; a repeated scalar flag keeps the last', () => {
  const options = compile(['--data-dir=/d', '--peers', 'a:1', '--peers=b:2,c:3', '--port=1', '--port=2']);
  assert.deepEqual(options.peers, ['a:1', 'b:2', 'c:3']);
  assert.equal(options.port, 2);
});

test('unknown flags, missing values and positional arguments are rejected', () => {
  assert.throws(() => compile(['--data-dir=/d', '--foo']), optionsError('unknown option --foo'));
  assert.throws(() => compile(['--data-dir=/d', '--foo=1']), optionsError('unknown option --foo'));
  assert.throws(() => compile(['--help']), optionsError('unknown option --help'));
  assert.throws(() => compile(['--data-dir']), optionsError('--data-dir: missing value'));
  assert.throws(() => compile(['--port', '--data-dir=/d']), optionsError('--port: missing value'));
  assert.throws(() => compile(['--data-dir=/d', 'extra']), optionsError('unexpected argument "extra" (settings are given as --name value)'));
});

test('a bool without a default is false; a flag declared twice is a bug in the specs', () => {
  const result = compileOptionSpecs<{ dev: boolean }>({ dev: { kind: 'bool', flag: 'dev', doc: 'Dev mode.' } }, { argv: [], env: {} });
  assert.deepEqual(result, { dev: false });
  assert.throws(
    () =>
      compileOptionSpecs<{ a: string; b: string }>(
        { a: { kind: 'string', flag: 'x', default: '', doc: '' }, b: { kind: 'string', flag: '--x', default: '', doc: '' } },
        { argv: [], env: {} },
      ),
    /declared twice/,
  );
});

test('defaults are copied, not shared between results', () => {
  const first = compile(['--data-dir=/d']);
  first.peers.push('mutated');
  assert.deepEqual(compile(['--data-dir=/d']).peers, []);
});

test('help lists every flag, env variable, default and doc line', () => {
  const help = formatOptionsHelp(specs);
  for (const expected of [
    '--port <int>',
    'gRPC port; 0 picks a free one.',
    'env CONCORD_PORT; default 7000; between 0 and 65535',
    '--data-dir <string>',
    'env CONCORD_DATA_DIR; required',
    '--fsync\n',
    '--log-level <debug|info|warn|error>',
    '--election-timeout <duration>',
    'default 1s; between 100ms and 10s',
    '--peers <a,b,...>',
    'default (empty)',
  ]) {
    assert.ok(help.includes(expected), `help should contain ${JSON.stringify(expected)}:\n${help}`);
  }
});
