import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OptionsError } from '@concord/runtime';
import { compileCoordinatorOptions } from './options.js';

const compile = (argv: string[], env: Record<string, string> = {}) => compileCoordinatorOptions({ argv, env });

function rejects(argv: string[], pattern: RegExp, env: Record<string, string> = {}): void {
  assert.throws(
    () => compile(argv, env),
    (error: unknown) => {
      assert.ok(error instanceof OptionsError, `expected OptionsError, got ${String(error)}`);
      assert.match(error.message, pattern);
      return true;
    },
  );
}

describe('compileCoordinatorOptions', () => {
  it('fills documented defaults around the required --groups', () => {
    assert.deepEqual(compile(['--groups', 'g1=127.0.0.1:7101,g2=127.0.0.1:7102']), {
      listenHost: '127.0.0.1',
      listenPort: 7070,
      memberId: 'coordinator-0',
      groups: [
        { groupId: 'g1', addresses: ['127.0.0.1:7101'] },
        { groupId: 'g2', addresses: ['127.0.0.1:7102'] },
      ],
      ringVnodes: 128,
      ringEpoch: 1,
      shardTimeoutMs: 5000,
      logLevel: 'info',
    });
  });

  it('reads every setting from flags and from the environment', () => {
    const argv = [
      '--listen=[::1]:0',
      '--member-id', 'coordinator-2',
      '--groups', 'g1=10.0.0.1:7101|10.0.0.2:7101|shard-g1-2.shard:7101',
      '--groups', 'g2=[::1]:7102',
      '--ring-vnodes', '64',
      '--ring-epoch', '3',
      '--shard-timeout', '250ms',
      '--log-level', 'debug',
    ];
    const options = compile(argv);
    assert.equal(options.listenHost, '::1');
    assert.equal(options.listenPort, 0);
    assert.equal(options.memberId, 'coordinator-2');
    assert.deepEqual(options.groups, [
      { groupId: 'g1', addresses: ['10.0.0.1:7101', '10.0.0.2:7101', 'shard-g1-2.shard:7101'] },
      { groupId: 'g2', addresses: ['[::1]:7102'] },
    ]);
    assert.equal(options.ringVnodes, 64);
    assert.equal(options.ringEpoch, 3);
    assert.equal(options.shardTimeoutMs, 250);
    assert.equal(options.logLevel, 'debug');

    const fromEnv = compile([], {
      CONCORD_GROUPS: 'a=h:1',
      CONCORD_LISTEN: '0.0.0.0:9000',
      CONCORD_SHARD_TIMEOUT: '2s',
      CONCORD_RING_EPOCH: '7',
    });
    assert.deepEqual(fromEnv.groups, [{ groupId: 'a', addresses: ['h:1'] }]);
    assert.equal(fromEnv.listenPort, 9000);
    assert.equal(fromEnv.shardTimeoutMs, 2000);
    assert.equal(fromEnv.ringEpoch, 7);
    // A flag wins over its variable.
    assert.deepEqual(compile(['--groups', 'b=h:2'], { CONCORD_GROUPS: 'a=h:1' }).groups, [{ groupId: 'b', addresses: ['h:2'] }]);
  });

  it('requires --groups and names the variable too', () => {
    rejects([], /missing required option --groups \(or set CONCORD_GROUPS\)/);
    rejects(['--groups', ','], /^--groups: must name at least one shard group/);
  });

  it('rejects malformed --groups entries with a message naming --groups', () => {
    rejects(['--groups', 'g1'], /^--groups: each entry must be <group-id>=<host:port>.* \(got "g1"\)/);
    rejects(['--groups', 'g 1=h:1'], /^--groups: group id must be 1 to 64 letters, digits, "-" or "_" \(got "g 1"/);
    rejects(['--groups', '=h:1'], /^--groups: group id must be/);
    rejects(['--groups', 'g1=h:1,g1=h:2'], /^--groups: group g1 is listed twice/);
    rejects(['--groups', 'g1=localhost'], /^--groups: group g1: replica address must be host:port \(got "localhost"\)/);
    rejects(['--groups', 'g1=h:0'], /^--groups: group g1: replica port must be from 1 to 65535 \(got "h:0"\)/);
    rejects(['--groups', 'g1=h:70000'], /replica port must be from 1 to 65535/);
    rejects(['--groups', 'g1=h:1|'], /^--groups: group g1: every replica address must be host:port, none may be empty/);
    rejects(['--groups', 'g1=bad_host!:1'], /^--groups: group g1: replica address must start with a host name/);
    rejects(['--groups', 'g1=h:1,g2=h:1'], /^--groups: h:1 is listed for both g1 and g2/);
    rejects(['--groups', 'g1=h:1|h:1'], /^--groups: group g1 lists h:1 twice/);
    rejects([], /^CONCORD_GROUPS \(for --groups\): group id must be/, { CONCORD_GROUPS: '!=h:1' });
  });

  it('rejects bad values of the other settings, naming them', () => {
    const groups = ['--groups', 'g1=h:1'];
    rejects([...groups, '--listen', 'nowhere'], /^--listen: must be host:port/);
    rejects([...groups, '--member-id', 'a b'], /^--member-id: must be 1 to 64 letters/);
    rejects([...groups, '--ring-vnodes', '0'], /^--ring-vnodes: must be an integer between 1 and 4096/);
    rejects([...groups, '--ring-epoch', '0'], /^--ring-epoch: must be an integer of at least 1/);
    rejects([...groups, '--shard-timeout', 'soon'], /^--shard-timeout: must be a duration/);
    rejects([...groups, '--log-level', 'loud'], /^--log-level: must be one of trace, debug/);
    rejects([...groups, '--frobnicate'], /unknown option --frobnicate/);
    rejects([], /^CONCORD_SHARD_TIMEOUT \(for --shard-timeout\): must be a duration/, { CONCORD_GROUPS: 'g1=h:1', CONCORD_SHARD_TIMEOUT: '-1' });
  });
});
