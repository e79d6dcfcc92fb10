import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OptionsError, formatOptionsHelp } from '@concord/runtime';
import { createCertificateAuthority, issueCertificate } from '@concord/runtime/testing';
import { SHARD_OPTION_SPECS, compileShardOptions } from './options.js';

const PEERS = 'g1-0=127.0.0.1:7101,g1-1=127.0.0.1:7102,g1-2=127.0.0.1:7103';
/** What a raft replica (the default engine) must be given. */
const REQUIRED = ['--group-id', 'g1', '--data-dir', '/var/lib/concord', '--ring-groups', 'g1,g2', '--listen', '127.0.0.1:7101', '--peers', PEERS];
/** What a single-engine replica must be given. */
const REQUIRED_SINGLE = ['--group-id', 'g1', '--data-dir', '/var/lib/concord', '--ring-groups', 'g1,g2', '--engine', 'single'];

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
  it('fills the documented defaults: the raft engine, 50 ms ticks, elections after 10 ticks, heartbeats every tick', () => {
    assert.deepEqual(compile(REQUIRED), {
      groupId: 'g1',
      memberId: 'g1-0',
      listenHost: '127.0.0.1',
      listenPort: 7101,
      dataDir: '/var/lib/concord',
      ringGroups: ['g1', 'g2'],
      ringVnodes: 128,
      ringEpoch: 1,
      engine: 'raft',
      peers: { 'g1-0': '127.0.0.1:7101', 'g1-1': '127.0.0.1:7102', 'g1-2': '127.0.0.1:7103' },
      join: false,
      bootstrapCheckTimeoutMs: 5000,
      forceBootstrap: false,
      advertisedAddress: '127.0.0.1:7101',
      tickMs: 50,
      electionTicks: 10,
      heartbeatTicks: 1,
      readMode: 'safe',
      sync: true,
      snapshotEvery: 10000,
      maxUncommittedBytes: 64 * 1024 * 1024,
      snapshotLogRatio: 0.5,
      snapshotRatioMinBytes: 4 * 1024 * 1024,
      logLevel: 'info',
    });
  });

  it('takes --read-mode lease and refuses unknown read modes, naming the choices', () => {
    assert.equal(compile([...REQUIRED, '--read-mode', 'lease']).readMode, 'lease');
    assertOptionsError([...REQUIRED, '--read-mode', 'fast'], /--read-mode.*safe.*lease/);
  });

  it('takes the Raft log settings from flags and the environment, refusing values out of range by name and limit', () => {
    const options = compile([...REQUIRED, '--max-uncommitted-bytes', '1048576', '--snapshot-log-percent', '200'], { CONCORD_SNAPSHOT_RATIO_MIN_BYTES: '0' });
    assert.equal(options.maxUncommittedBytes, 1_048_576);
    assert.equal(options.snapshotLogRatio, 2);
    assert.equal(options.snapshotRatioMinBytes, 0);
    assert.equal(compile([...REQUIRED, '--max-uncommitted-bytes', '0']).maxUncommittedBytes, 0);
    assertOptionsError([...REQUIRED, '--max-uncommitted-bytes', '-1'], /^--max-uncommitted-bytes: .*0.*1099511627776.*\(got "-1"\)/);
    assertOptionsError([...REQUIRED, '--snapshot-log-percent', '0.5'], /^--snapshot-log-percent: .*0.*100000.*\(got "0\.5"\)/);
    assertOptionsError([...REQUIRED], /^CONCORD_SNAPSHOT_RATIO_MIN_BYTES \(for --snapshot-ratio-min-bytes\): must be an integer between 0 and 1099511627776 \(got "lots"\)/, { CONCORD_SNAPSHOT_RATIO_MIN_BYTES: 'lots' });
  });

  it('runs the single engine without peers, on port 0 by default', () => {
    const options = compile(REQUIRED_SINGLE);
    assert.equal(options.engine, 'single');
    assert.deepEqual(options.peers, {});
    assert.equal(options.listenPort, 0);
  });

  it('starts a joining replica from the current members without it, advertising --listen', () => {
    const joining = ['--group-id', 'g1', '--member-id', 'g1-3', '--data-dir', '/d', '--ring-groups', 'g1', '--join'];
    const options = compile([...joining, '--listen', '127.0.0.1:7110', '--peers', 'g1-0=127.0.0.1:7101,g1-1=127.0.0.1:7102']);
    assert.equal(options.join, true);
    assert.equal(options.advertisedAddress, '127.0.0.1:7110');
    assert.deepEqual(options.peers, { 'g1-0': '127.0.0.1:7101', 'g1-1': '127.0.0.1:7102' });
    assertOptionsError([...joining, '--listen', '127.0.0.1:7110'], /^--peers: required with --join: the running group's current members/);
    assertOptionsError([...joining, '--listen', '127.0.0.1:7110', '--peers', 'g1-3=127.0.0.1:7110,g1-0=127.0.0.1:7101'], /^--peers: with --join, must list the running group's current members without this replica; g1-3 is listed/);
    assertOptionsError([...joining, '--peers', 'g1-0=127.0.0.1:7101'], /^--listen: port 0 cannot be used with --join/);
    assertOptionsError([...joining, '--listen', '0.0.0.0:7110', '--peers', 'g1-0=127.0.0.1:7101'], /^--listen: with --join, --listen is the address the other members dial unless --advertise names another/);
    assertOptionsError([...joining, '--listen', '127.0.0.1:7101', '--peers', 'g1-0=127.0.0.1:7101'], /^--listen: 127.0.0.1:7101 is the address of a current member/);
    assertOptionsError([...REQUIRED_SINGLE, '--join'], /^--join: only a raft replica can join a group/);
  });

  it('advertises --advertise rather than --listen: a joining replica may listen on every interface', () => {
    const joining = ['--group-id', 'g1', '--member-id', 'g1-3', '--data-dir', '/d', '--ring-groups', 'g1', '--join', '--peers', 'g1-0=shard-g1-0.shard-g1:7100'];
    const options = compile([...joining, '--listen', '0.0.0.0:7100', '--advertise', 'shard-g1-3.shard-g1.default.svc.cluster.local:7100']);
    assert.equal(options.advertisedAddress, 'shard-g1-3.shard-g1.default.svc.cluster.local:7100');
    assert.equal(options.listenHost, '0.0.0.0');
    assertOptionsError([...joining, '--listen', '0.0.0.0:7100', '--advertise', 'shard-g1-0.shard-g1:7100'], /^--advertise: shard-g1-0.shard-g1:7100 is the address of a current member/);
    assertOptionsError([...joining, '--listen', '0.0.0.0:7100'], /give --advertise <host:port>/);
  });

  it("takes --advertise on a founding raft replica only as its --peers entry, which then need not share --listen's port", () => {
    const peers = 'g1-0=shard-g1-0.shard-g1:7100,g1-1=shard-g1-1.shard-g1:7100,g1-2=shard-g1-2.shard-g1:7100';
    const founding = ['--group-id', 'g1', '--member-id', 'g1-1', '--data-dir', '/d', '--ring-groups', 'g1', '--peers', peers];
    assert.equal(compile([...founding, '--listen', '0.0.0.0:7100']).advertisedAddress, 'shard-g1-1.shard-g1:7100');
    assert.equal(compile([...founding, '--listen', '[::]:7100'], { CONCORD_ADVERTISE: 'shard-g1-1.shard-g1:7100' }).advertisedAddress, 'shard-g1-1.shard-g1:7100');
    assertOptionsError(
      [...founding, '--listen', '0.0.0.0:7100', '--advertise', '10.0.0.7:7100'],
      /^--advertise: must be this replica's --peers address shard-g1-1.shard-g1:7100, the one its group records for it, or be left out \(got 10.0.0.7:7100\)$/,
    );
    assertOptionsError([...founding, '--listen', '0.0.0.0:9100'], /^--listen: port 9100 differs from .*say so with --advertise\), so listen on port 7100$/);
    assert.equal(compile([...founding, '--listen', '0.0.0.0:9100', '--advertise', 'shard-g1-1.shard-g1:7100']).listenPort, 9100);
  });

  it('advertises --advertise with the single engine, else nothing (the bound address)', () => {
    assert.equal(compile(REQUIRED_SINGLE).advertisedAddress, '');
    assert.equal(compile([...REQUIRED_SINGLE, '--listen', '0.0.0.0:7100', '--advertise', 'shard-g1-0.shard-g1:7100']).advertisedAddress, 'shard-g1-0.shard-g1:7100');
    assertOptionsError([...REQUIRED_SINGLE, '--advertise', '0.0.0.0:7100'], /^--advertise: is the address others dial, so it must name this host/);
    assertOptionsError([...REQUIRED_SINGLE, '--advertise', 'shard:0'], /^--advertise: .*port from 1 to 65535/);
    assertOptionsError([...REQUIRED_SINGLE, '--advertise', 'shard'], /^--advertise: must be empty, or host:port/);
  });

  it('reads the --tls-* files when all three are given, and refuses fewer or a file it cannot read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'concord-shard-tls-'));
    try {
      const ca = createCertificateAuthority(dir, 'ca');
      const cert = issueCertificate(ca, dir, 'g1-0', { ips: ['127.0.0.1'] });
      assert.equal(compile(REQUIRED).tls, undefined);
      const options = compile([...REQUIRED, '--tls-cert', cert.cert, '--tls-key', cert.key], { CONCORD_TLS_CA: ca.cert });
      assert.match(options.tls?.ca.toString() ?? '', /BEGIN CERTIFICATE/);
      assertOptionsError([...REQUIRED, '--tls-cert', cert.cert, '--tls-ca', ca.cert], /^--tls-cert, --tls-key and --tls-ca go together: .*missing --tls-key/);
      assertOptionsError([...REQUIRED, '--tls-cert', cert.cert, '--tls-key', join(dir, 'gone.key'), '--tls-ca', ca.cert], /^--tls-key: cannot read .*gone\.key/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('requires --peers for raft, naming this replica, and refuses them for single', () => {
    assertOptionsError(['--group-id', 'g1', '--member-id', 'g1-1', '--data-dir', '/d', '--ring-groups', 'g1'], /^--peers: required with --engine raft: .*this replica \(--member-id g1-1\) included/);
    assertOptionsError([...REQUIRED, '--member-id', 'g1-3'], /^--peers: must include this replica's --member-id "g1-3" \(got g1-0,g1-1,g1-2\); to add a new replica to a running group, start it with --join$/);
    assertOptionsError([...REQUIRED_SINGLE, '--peers', PEERS], /^--peers: only the raft engine has peers; remove it, or use --engine raft/);
    assertOptionsError(REQUIRED_SINGLE, /^CONCORD_PEERS \(for --peers\): only the raft engine has peers/, { CONCORD_PEERS: PEERS });
  });

  it('checks every --peers entry', () => {
    const withPeers = (peers: string): string[] => [...REQUIRED.slice(0, -1), peers];
    assertOptionsError(withPeers('g1-0@127.0.0.1:7101'), /^--peers: each entry must be <member-id>=<host:port> \(got "g1-0@127.0.0.1:7101"\)$/);
    assertOptionsError(withPeers('g1-0=127.0.0.1:7101,g 1=127.0.0.1:7102'), /^--peers: member id must be 1 to 64 letters/);
    assertOptionsError(withPeers('g1-0=127.0.0.1:7101,g1-1=127.0.0.1'), /^--peers: member g1-1: address must be host:port with a port from 1 to 65535/);
    assertOptionsError(withPeers('g1-0=127.0.0.1:7101,g1-1=127.0.0.1:0'), /^--peers: member g1-1: address must be host:port/);
    assertOptionsError(withPeers('g1-0=127.0.0.1:7101,g1-0=127.0.0.1:7102'), /^--peers: member g1-0 is listed twice$/);
    assertOptionsError(withPeers('g1-0=127.0.0.1:7101,g1-1=127.0.0.1:7101'), /^--peers: 127.0.0.1:7101 is listed for both g1-0 and g1-1$/);
    const ipv6 = compile([...REQUIRED.slice(0, -3), '[::1]:7101', '--peers', 'g1-0=[::1]:7101,g1-1=[::1]:7102,g1-2=shard-2.svc:7103']);
    assert.deepEqual(ipv6.peers, { 'g1-0': '[::1]:7101', 'g1-1': '[::1]:7102', 'g1-2': 'shard-2.svc:7103' });
    assert.equal(ipv6.listenHost, '::1');
  });

  it("requires --listen to use the port of this replica's --peers entry, whatever the host", () => {
    assertOptionsError(REQUIRED.slice(0, -4).concat('--peers', PEERS), /^--listen: port 0 cannot be used with --engine raft: .*listen on port 7101 \(e.g. --listen 127.0.0.1:7101\)$/);
    assertOptionsError([...REQUIRED, '--listen', '127.0.0.1:7102'], /^--listen: port 7102 differs from this replica's --peers address 127.0.0.1:7101; .*listen on port 7101$/);
    assert.equal(compile([...REQUIRED, '--listen', '0.0.0.0:7101']).listenHost, '0.0.0.0');
  });

  it('checks the raft timing settings', () => {
    const options = compile([...REQUIRED, '--tick-ms', '20', '--election-ticks', '25', '--heartbeat-ticks', '5']);
    assert.deepEqual([options.tickMs, options.electionTicks, options.heartbeatTicks], [20, 25, 5]);
    assertOptionsError([...REQUIRED, '--tick-ms', '0'], /^--tick-ms: must be an integer between 1 and 60000/);
    assertOptionsError([...REQUIRED, '--election-ticks', '1'], /^--election-ticks: must be an integer between 2 and 10000/);
    assertOptionsError([...REQUIRED, '--heartbeat-ticks', '10'], /^--heartbeat-ticks: must be less than --election-ticks \(10\).*\(got 10\)$/);
    assertOptionsError(REQUIRED, /^CONCORD_HEARTBEAT_TICKS \(for --heartbeat-ticks\): must be less than --election-ticks \(4\)/, {
      CONCORD_ELECTION_TICKS: '4',
      CONCORD_HEARTBEAT_TICKS: '4',
    });
  });

  it('reads environment variables, and a flag wins over its variable', () => {
    const options = compile(['--ring-epoch', '4', '--engine', 'single'], {
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
    assert.equal(compile([...REQUIRED_SINGLE, '--listen', '0.0.0.0:65535']).listenPort, 65535);
    assert.equal(compile([...REQUIRED_SINGLE, '--listen', 'shard-0.shard.svc:7100']).listenHost, 'shard-0.shard.svc');
    for (const bad of ['127.0.0.1', '127.0.0.1:65536', ':7100', 'host:port', '::1:7100', 'a b:1']) {
      assertOptionsError([...REQUIRED_SINGLE, '--listen', bad], /--listen: must be host:port/);
    }
  });

  it('checks numbers, enums and booleans', () => {
    assertOptionsError([...REQUIRED, '--ring-vnodes', '0'], /--ring-vnodes: must be an integer between 1 and 4096/);
    assertOptionsError([...REQUIRED, '--ring-epoch', '0'], /--ring-epoch: must be an integer of at least 1/);
    assertOptionsError([...REQUIRED, '--snapshot-every', 'often'], /--snapshot-every/);
    assertOptionsError([...REQUIRED, '--engine', 'multipaxos'], /--engine: must be one of raft, single/);
    assertOptionsError([...REQUIRED, '--log-level', 'loud'], /--log-level: must be one of/);
    assertOptionsError([...REQUIRED, '--sync=maybe'], /--sync: must be true or false/);
    assert.equal(compile([...REQUIRED, '--sync=false']).sync, false);
    assertOptionsError([...REQUIRED, '--colour', 'blue'], /unknown option --colour/);
  });

  it('lists every setting in the help text', () => {
    const help = formatOptionsHelp(SHARD_OPTION_SPECS);
    const flags = ['group-id', 'member-id', 'listen', 'data-dir', 'ring-groups', 'ring-vnodes', 'ring-epoch', 'engine', 'peers', 'tick-ms', 'election-ticks', 'heartbeat-ticks', 'sync', 'snapshot-every', 'log-level', 'advertise', 'tls-cert', 'tls-key', 'tls-ca'];
    for (const flag of flags) {
      assert.match(help, new RegExp(`--${flag}\\b`));
    }
    assert.match(help, /env CONCORD_DATA_DIR; required/);
    assert.match(help, /once the data dir holds Raft state, membership comes from the replicated log and this setting is ignored/);
    assert.match(help, /--election-ticks × --tick-ms, randomized up to\s+twice that/);
  });
});
