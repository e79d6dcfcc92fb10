import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OptionsError, formatOptionsHelp } from '@concord/runtime';
import { SHARD_OPTION_SPECS, compileShardOptions } from './options.js';

const REQUIRED = ['--group-id', 'g1', '--data-dir', '/var/lib/concord', '--ring-groups', 'g1,g2'];

function compile(argv: string[], env: Record<string, string> = {}) {
  return compileShardOptions({ argv, env });
}

function assertOptionsError(argv: string[], pattern: RegExp, env: Record<string, string> = {}): void {
  assert.throws(
    () => compile(argv, env),
    (error: unknown) => error instanceof OptionsError && pattern.test(error.message),
  );
}

describe('compileShardOptions', () => {
  it('fills the documented defaults', () => {
    assert.deepEqual(compile(REQUIRED), {
      groupId: 'g1',
      memberId: 'g1-0',
      listenHost: '127.0.0.1',
      listenPort: 0,
      dataDir: '/var/lib/concord',
      ringGroups: ['g1', 'g2'],
      ringVnodes: 128,
      ringEpoch: 1,
      engine: 'single',
      sync: true,
      snapshotEvery: 10000,
      logLevel: 'info',
    });
  });

  it('reads environment variables, and a flag wins over its variable', () => {
    const options = compile(['--ring-epoch', '4'], {
      CONCORD_GROUP_ID: 'shard_a',
      CONCORD_MEMBER_ID: 'shard_a-2',
      CONCORD_DATA_DIR: '/data',
      CONCORD_RING_GROUPS: 'shard_a, shard_b',
      CONCORD_RING_EPOCH: '3',
      CONCORD_LISTEN: '[::1]:7100',
      CONCORD_SYNC: 'false',
      CONCORD_SNAPSHOT_EVERY: '500',
      CONCORD_RING_VNODES: '16',
      CONCORD_LOG_LEVEL: 'debug',
    });
    assert.equal(options.groupId, 'shard_a');
    assert.equal(options.memberId, 'shard_a-2');
    assert.deepEqual(options.ringGroups, ['shard_a', 'shard_b']);
    assert.equal(options.ringEpoch, 4);
    assert.equal(options.listenHost, '::1');
    assert.equal(options.listenPort, 7100);
    assert.equal(options.sync, false);
    assert.equal(options.snapshotEvery, 500);
    assert.equal(options.ringVnodes, 16);
    assert.equal(options.logLevel, 'debug');
  });

  it('names the missing required settings', () => {
    assertOptionsError(['--data-dir', '/d', '--ring-groups', 'g1'], /--group-id.*CONCORD_GROUP_ID/);
    assertOptionsError(['--group-id', 'g1', '--ring-groups', 'g1'], /--data-dir.*CONCORD_DATA_DIR/);
    assertOptionsError(['--group-id', 'g1', '--data-dir', '/d'], /--ring-groups.*CONCORD_RING_GROUPS/);
  });

  it('rejects a malformed group id', () => {
    assertOptionsError([...REQUIRED, '--group-id', 'g 1'], /--group-id: must be 1 to 64 letters/);
    assertOptionsError([...REQUIRED, '--group-id', 'x'.repeat(65)], /--group-id/);
    assertOptionsError(REQUIRED.slice(2), /CONCORD_GROUP_ID \(for --group-id\)/, { CONCORD_GROUP_ID: 'g/1' });
  });

  it('requires the ring to include this group, once', () => {
    assertOptionsError(['--group-id', 'g1', '--data-dir', '/d', '--ring-groups', 'g2,g3'], /--ring-groups: must include this replica's --group-id "g1"/);
    assertOptionsError(['--group-id', 'g1', '--data-dir', '/d', '--ring-groups', 'g1,g1'], /listed twice/);
    assertOptionsError(['--group-id', 'g1', '--data-dir', '/d', '--ring-groups', 'g1,b@d'], /each group id/);
    assertOptionsError(['--group-id', 'g1', '--data-dir', '/d', '--ring-groups', ','], /at least one/);
  });

  it('validates --listen as host:port', () => {
    assert.equal(compile([...REQUIRED, '--listen', '0.0.0.0:65535']).listenPort, 65535);
    assert.equal(compile([...REQUIRED, '--listen', 'shard-0.shard.svc:7100']).listenHost, 'shard-0.shard.svc');
    for (const bad of ['127.0.0.1', '127.0.0.1:65536', ':7100', 'host:port', '::1:7100', 'a b:1']) {
      assertOptionsError([...REQUIRED, '--listen', bad], /--listen: must be host:port/);
    }
  });

  it('checks numbers, enums and booleans', () => {
    assertOptionsError([...REQUIRED, '--ring-vnodes', '0'], /--ring-vnodes: must be an integer between 1 and 4096/);
    assertOptionsError([...REQUIRED, '--ring-epoch', '0'], /--ring-epoch: must be an integer of at least 1/);
    assertOptionsError([...REQUIRED, '--snapshot-every', 'often'], /--snapshot-every/);
    assertOptionsError([...REQUIRED, '--engine', 'raft'], /--engine: must be one of single/);
    assertOptionsError([...REQUIRED, '--log-level', 'loud'], /--log-level: must be one of/);
    assertOptionsError([...REQUIRED, '--sync=maybe'], /--sync: must be true or false/);
    assert.equal(compile([...REQUIRED, '--sync=false']).sync, false);
    assertOptionsError([...REQUIRED, '--colour', 'blue'], /unknown option --colour/);
  });

  it('lists every setting in the help text', () => {
    const help = formatOptionsHelp(SHARD_OPTION_SPECS);
    for (const flag of ['group-id', 'member-id', 'listen', 'data-dir', 'ring-groups', 'ring-vnodes', 'ring-epoch', 'engine', 'sync', 'snapshot-every', 'log-level']) {
      assert.match(help, new RegExp(`--${flag}\\b`));
    }
    assert.match(help, /env CONCORD_DATA_DIR; required/);
  });
});
