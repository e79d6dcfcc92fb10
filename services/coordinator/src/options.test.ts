import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { OptionsError } from '@concord/runtime';
import { createCertificateAuthority, issueCertificate } from '@concord/runtime/testing';
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

const PEERS = 'coordinator-0=127.0.0.1:7070,coordinator-1=127.0.0.1:7071,coordinator-2=127.0.0.1:7072';
/** The smallest valid raft command line. */
const RAFT = ['--peers', PEERS, '--data-dir', '/var/lib/concord'];
const CONFIG = ['--engine', 'config'];

describe('compileCoordinatorOptions', () => {
  it('defaults to the raft engine and fills documented defaults around --peers and --data-dir', () => {
    assert.deepEqual(compile([...RAFT, '--groups', 'g1=127.0.0.1:7101,g2=127.0.0.1:7102']), {
      listenHost: '127.0.0.1',
      listenPort: 7070,
      memberId: 'coordinator-0',
      engine: 'raft',
      peers: { 'coordinator-0': '127.0.0.1:7070', 'coordinator-1': '127.0.0.1:7071', 'coordinator-2': '127.0.0.1:7072' },
      join: false,
      bootstrapCheckTimeoutMs: 5000,
      forceBootstrap: false,
      advertisedAddress: '127.0.0.1:7070',
      dataDir: '/var/lib/concord',
      groups: [
        { groupId: 'g1', addresses: ['127.0.0.1:7101'] },
        { groupId: 'g2', addresses: ['127.0.0.1:7102'] },
      ],
      ringVnodes: 128,
      ringEpoch: 1,
      tickMs: 50,
      electionTicks: 10,
      heartbeatTicks: 1,
      sync: true,
      snapshotEvery: 10_000,
      maxUncommittedBytes: 64 * 1024 * 1024,
      snapshotLogRatio: 0.5,
      snapshotRatioMinBytes: 4 * 1024 * 1024,
      shardTimeoutMs: 5000,
      logLevel: 'info',
    });
    // With raft, --groups only seeds an empty meta group: a restarted member may go without.
    assert.deepEqual(compile(RAFT).groups, []);
  });

  it('config engine: the ring from --groups, no peers and no data', () => {
    const options = compile([...CONFIG, '--groups', 'g1=127.0.0.1:7101', '--listen', '127.0.0.1:0']);
    assert.equal(options.engine, 'config');
    assert.deepEqual(options.peers, {});
    assert.equal(options.dataDir, '');
    assert.equal(options.listenPort, 0);
    assert.deepEqual(options.groups, [{ groupId: 'g1', addresses: ['127.0.0.1:7101'] }]);
  });

  it('reads every setting from flags and from the environment', () => {
    const argv = [
      '--listen=[::1]:7072',
      '--member-id', 'coordinator-2',
      '--peers', 'coordinator-0=[::1]:7070,coordinator-1=[::1]:7071',
      '--peers', 'coordinator-2=[::1]:7072',
      '--data-dir', 'data/c2',
      '--groups', 'g1=10.0.0.1:7101|10.0.0.2:7101|shard-g1-2.shard:7101',
      '--groups', 'g2=[::1]:7102',
      '--ring-vnodes', '64',
      '--ring-epoch', '3',
      '--tick-ms', '20',
      '--election-ticks', '15',
      '--heartbeat-ticks', '2',
      '--sync=false',
      '--snapshot-every', '500',
      '--shard-timeout', '250ms',
      '--log-level', 'debug',
    ];
    const options = compile(argv);
    assert.equal(options.listenHost, '::1');
    assert.equal(options.listenPort, 7072);
    assert.equal(options.memberId, 'coordinator-2');
    assert.deepEqual(options.peers, { 'coordinator-0': '[::1]:7070', 'coordinator-1': '[::1]:7071', 'coordinator-2': '[::1]:7072' });
    assert.equal(options.dataDir, 'data/c2');
    assert.deepEqual(options.groups, [
      { groupId: 'g1', addresses: ['10.0.0.1:7101', '10.0.0.2:7101', 'shard-g1-2.shard:7101'] },
      { groupId: 'g2', addresses: ['[::1]:7102'] },
    ]);
    assert.equal(options.ringVnodes, 64);
    assert.equal(options.ringEpoch, 3);
    assert.equal(options.tickMs, 20);
    assert.equal(options.electionTicks, 15);
    assert.equal(options.heartbeatTicks, 2);
    assert.equal(options.sync, false);
    assert.equal(options.snapshotEvery, 500);
    assert.equal(options.shardTimeoutMs, 250);
    assert.equal(options.logLevel, 'debug');

    const fromEnv = compile([], {
      CONCORD_ENGINE: 'raft',
      CONCORD_MEMBER_ID: 'coordinator-1',
      CONCORD_LISTEN: '0.0.0.0:7071',
      CONCORD_PEERS: PEERS,
      CONCORD_DATA_DIR: '/data',
      CONCORD_GROUPS: 'a=h:1',
      CONCORD_SHARD_TIMEOUT: '2s',
      CONCORD_RING_EPOCH: '7',
      CONCORD_TICK_MS: '100',
    });
    assert.equal(fromEnv.memberId, 'coordinator-1');
    assert.equal(fromEnv.listenHost, '0.0.0.0');
    assert.equal(fromEnv.listenPort, 7071);
    assert.equal(fromEnv.dataDir, '/data');
    assert.deepEqual(fromEnv.groups, [{ groupId: 'a', addresses: ['h:1'] }]);
    assert.equal(fromEnv.shardTimeoutMs, 2000);
    assert.equal(fromEnv.ringEpoch, 7);
    assert.equal(fromEnv.tickMs, 100);
    // A flag wins over its variable.
    assert.deepEqual(compile([...CONFIG, '--groups', 'b=h:2'], { CONCORD_GROUPS: 'a=h:1' }).groups, [{ groupId: 'b', addresses: ['h:2'] }]);
  });

  it('raft: requires --peers naming this member, a matching --listen port and --data-dir', () => {
    rejects([], /^--peers: required with --engine raft: the meta group's initial members .*--member-id coordinator-0/);
    rejects(['--peers', 'coordinator-1=h:7071', '--data-dir', 'd'], /^--peers: must include this coordinator's --member-id "coordinator-0" \(got coordinator-1\)/);
    rejects(['--peers', 'coordinator-0', '--data-dir', 'd'], /^--peers: each entry must be <member-id>=<host:port> \(got "coordinator-0"\)/);
    rejects(['--peers', 'c 0=h:1', '--data-dir', 'd'], /^--peers: member id must be 1 to 64 letters/);
    rejects(['--peers', 'coordinator-0=h:7070,coordinator-0=h:7071', '--data-dir', 'd'], /^--peers: member coordinator-0 is listed twice/);
    rejects(['--peers', 'coordinator-0=h:7070,coordinator-1=h:7070', '--data-dir', 'd'], /^--peers: h:7070 is listed for both coordinator-0 and coordinator-1/);
    rejects(['--peers', 'coordinator-0=h:0', '--data-dir', 'd'], /^--peers: member coordinator-0: address must be host:port with a port from 1 to 65535/);
    rejects(['--peers', PEERS], /^--data-dir: required with --engine raft/);
    rejects([...RAFT, '--listen', '127.0.0.1:0'], /^--listen: port 0 cannot be used with --engine raft: .* listen on port 7070 \(e.g. --listen 127.0.0.1:7070\)/);
    rejects([...RAFT, '--listen', '127.0.0.1:7071'], /^--listen: port 7071 differs from this coordinator's --peers address 127.0.0.1:7070/);
    rejects([...RAFT, '--heartbeat-ticks', '10'], /^--heartbeat-ticks: must be less than --election-ticks \(10\)/);
    rejects([], /^CONCORD_PEERS \(for --peers\): member id must be/, { CONCORD_PEERS: '!=h:1' });
  });

  it('raft --join: a new coordinator listed nowhere in --peers, which name the running members, advertising --listen', () => {
    const joining = ['--member-id', 'coordinator-3', '--data-dir', 'd', '--join'];
    const options = compile([...joining, '--listen', '127.0.0.1:7073', '--peers', 'coordinator-1=127.0.0.1:7071,coordinator-2=127.0.0.1:7072']);
    assert.equal(options.join, true);
    assert.equal(options.advertisedAddress, '127.0.0.1:7073');
    assert.deepEqual(options.peers, { 'coordinator-1': '127.0.0.1:7071', 'coordinator-2': '127.0.0.1:7072' });
    assert.equal(compile([...joining, '--listen', '127.0.0.1:7073', '--peers', 'coordinator-1=127.0.0.1:7071'], { CONCORD_JOIN: 'false' }).join, true);
    assert.equal(compile(['--listen', '127.0.0.1:7073', '--peers', 'coordinator-1=127.0.0.1:7071', '--member-id', 'coordinator-3', '--data-dir', 'd'], { CONCORD_JOIN: 'true' }).join, true);
    rejects([...joining, '--listen', '127.0.0.1:7073'], /^--peers: required with --join: the running meta group's current members .*--member-id coordinator-3/);
    rejects(
      [...joining, '--listen', '127.0.0.1:7073', '--peers', 'coordinator-3=127.0.0.1:7073,coordinator-1=127.0.0.1:7071'],
      /^--peers: with --join, must list the running meta group's current members without this coordinator; coordinator-3 is listed/,
    );
    rejects([...joining, '--listen', '127.0.0.1:0', '--peers', 'coordinator-1=127.0.0.1:7071'], /^--listen: port 0 cannot be used with --join/);
    rejects([...joining, '--listen', '0.0.0.0:7073', '--peers', 'coordinator-1=127.0.0.1:7071'], /^--listen: with --join, --listen is the address the other coordinators dial/);
    rejects([...joining, '--listen', '127.0.0.1:7071', '--peers', 'coordinator-1=127.0.0.1:7071'], /^--listen: 127.0.0.1:7071 is the address of a current member in --peers/);
    rejects(['--member-id', 'coordinator-3', '--join', '--listen', '127.0.0.1:7073', '--peers', 'coordinator-1=127.0.0.1:7071'], /^--data-dir: required with --engine raft/);
    rejects([...CONFIG, '--groups', 'g1=h:1', '--join'], /^--join: only a raft coordinator can join a meta group/);
    // Without --join, a coordinator missing from --peers is told how to join.
    rejects(['--member-id', 'coordinator-3', '--peers', PEERS, '--data-dir', 'd'], /to add a new coordinator to a running meta group, start it with --join$/);
  });

  it('reserves the group id meta for the coordinators\' meta group', () => {
    for (const engine of [CONFIG, RAFT]) rejects([...engine, '--groups', 'g1=h:1,meta=h:2'], /^--groups: group id meta is reserved for the coordinators' meta group/);
  });

  it('config: requires --groups and refuses raft-only settings', () => {
    rejects(CONFIG, /^--groups: required with --engine config: every shard group and its replicas/);
    rejects(CONFIG, /^CONCORD_GROUPS \(for --groups\): group id must be/, { CONCORD_GROUPS: '!=h:1' });
    rejects([...CONFIG, '--groups', 'g1=h:1', '--peers', PEERS], /^--peers: only the raft engine has peers/);
    rejects([...CONFIG, '--groups', 'g1=h:1', '--data-dir', 'd'], /^--data-dir: the config engine keeps no data/);
    rejects(['--engine', 'paxos'], /^--engine: must be one of raft, config/);
  });

  it('rejects malformed --groups entries with a message naming --groups, with either engine', () => {
    for (const engine of [CONFIG, RAFT]) {
      rejects([...engine, '--groups', 'g1'], /^--groups: each entry must be <group-id>=<host:port>.* \(got "g1"\)/);
      rejects([...engine, '--groups', 'g 1=h:1'], /^--groups: group id must be 1 to 64 letters, digits, "-" or "_" \(got "g 1"/);
      rejects([...engine, '--groups', '=h:1'], /^--groups: group id must be/);
      rejects([...engine, '--groups', 'g1=h:1,g1=h:2'], /^--groups: group g1 is listed twice/);
      rejects([...engine, '--groups', 'g1=localhost'], /^--groups: group g1: replica address must be host:port \(got "localhost"\)/);
      rejects([...engine, '--groups', 'g1=h:0'], /^--groups: group g1: replica port must be from 1 to 65535 \(got "h:0"\)/);
      rejects([...engine, '--groups', 'g1=h:70000'], /replica port must be from 1 to 65535/);
      rejects([...engine, '--groups', 'g1=h:1|'], /^--groups: group g1: every replica address must be host:port, none may be empty/);
      rejects([...engine, '--groups', 'g1=bad_host!:1'], /^--groups: group g1: replica address must start with a host name/);
      rejects([...engine, '--groups', 'g1=h:1,g2=h:1'], /^--groups: h:1 is listed for both g1 and g2/);
      rejects([...engine, '--groups', 'g1=h:1|h:1'], /^--groups: group g1 lists h:1 twice/);
    }
  });

  it('rejects bad values of the other settings, naming them', () => {
    const groups = [...CONFIG, '--groups', 'g1=h:1'];
    rejects([...groups, '--listen', 'nowhere'], /^--listen: must be host:port/);
    rejects([...groups, '--member-id', 'a b'], /^--member-id: must be 1 to 64 letters/);
    rejects([...groups, '--ring-vnodes', '0'], /^--ring-vnodes: must be an integer between 1 and 4096/);
    rejects([...groups, '--ring-epoch', '0'], /^--ring-epoch: must be an integer of at least 1/);
    rejects([...groups, '--shard-timeout', 'soon'], /^--shard-timeout: must be a duration/);
    rejects([...groups, '--log-level', 'loud'], /^--log-level: must be one of trace, debug/);
    rejects([...groups, '--tick-ms', '0'], /^--tick-ms: must be an integer between 1 and 60000/);
    rejects([...groups, '--election-ticks', '1'], /^--election-ticks: must be an integer between 2 and 10000/);
    rejects([...groups, '--frobnicate'], /unknown option --frobnicate/);
    rejects([], /^CONCORD_SHARD_TIMEOUT \(for --shard-timeout\): must be a duration/, { CONCORD_ENGINE: 'config', CONCORD_GROUPS: 'g1=h:1', CONCORD_SHARD_TIMEOUT: '-1' });
  });

  it('takes the meta group\'s Raft log settings, refusing values out of range by name and limit', () => {
    const options = compile([...RAFT, '--max-uncommitted-bytes', '2097152', '--snapshot-ratio-min-bytes', '0'], { CONCORD_SNAPSHOT_LOG_PERCENT: '25' });
    assert.equal(options.maxUncommittedBytes, 2_097_152);
    assert.equal(options.snapshotLogRatio, 0.25);
    assert.equal(options.snapshotRatioMinBytes, 0);
    rejects([...RAFT, '--max-uncommitted-bytes', 'lots'], /^--max-uncommitted-bytes: must be an integer between 0 and 1099511627776 \(got "lots"\)/);
    rejects([...RAFT, '--snapshot-log-percent', '100001'], /^--snapshot-log-percent: must be an integer between 0 and 100000/);
  });

  it('--advertise: any dialable address with config; with raft only its --peers entry, which then need not share the --listen port', () => {
    const groups = [...CONFIG, '--groups', 'g1=h:1'];
    assert.equal(compile(groups).advertisedAddress, '');
    assert.equal(compile([...groups, '--listen', '0.0.0.0:7070', '--advertise', 'concord-coordinator.default.svc:7070']).advertisedAddress, 'concord-coordinator.default.svc:7070');
    rejects([...groups, '--advertise', '[::]:7070'], /^--advertise: is the address others dial, so it must name this host/);
    const peers = 'coordinator-0=concord-coordinator-0.concord-coordinator:7070,coordinator-1=concord-coordinator-1.concord-coordinator:7070';
    const raft = ['--member-id', 'coordinator-1', '--peers', peers, '--data-dir', 'd'];
    assert.equal(compile([...raft, '--listen', '0.0.0.0:7070']).advertisedAddress, 'concord-coordinator-1.concord-coordinator:7070');
    assert.equal(compile([...raft, '--listen', '0.0.0.0:9070'], { CONCORD_ADVERTISE: 'concord-coordinator-1.concord-coordinator:7070' }).listenPort, 9070);
    rejects([...raft, '--listen', '0.0.0.0:9070'], /^--listen: port 9070 differs from .*say so with --advertise\), so listen on port 7070$/);
    rejects([...raft, '--listen', '0.0.0.0:7070', '--advertise', '10.0.0.9:7070'], /^--advertise: must be this coordinator's --peers address concord-coordinator-1.concord-coordinator:7070/);
    const joining = ['--member-id', 'coordinator-3', '--data-dir', 'd', '--join', '--peers', peers, '--listen', '0.0.0.0:7070'];
    assert.equal(compile([...joining, '--advertise', 'concord-coordinator-3.concord-coordinator:7070']).advertisedAddress, 'concord-coordinator-3.concord-coordinator:7070');
    rejects(joining, /^--listen: with --join, --listen is the address the other coordinators dial unless --advertise names another, so give --advertise/);
  });

  it('--tls-cert, --tls-key, --tls-ca: all three are read, fewer are refused, an unreadable file is named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'concord-coordinator-tls-'));
    try {
      const ca = createCertificateAuthority(dir, 'ca');
      const cert = issueCertificate(ca, dir, 'coordinator-0', { ips: ['127.0.0.1'] });
      assert.equal(compile(RAFT).tls, undefined);
      const tls = compile(RAFT, { CONCORD_TLS_CERT: cert.cert, CONCORD_TLS_KEY: cert.key, CONCORD_TLS_CA: ca.cert }).tls;
      assert.match(tls?.cert.toString() ?? '', /BEGIN CERTIFICATE/);
      rejects([...RAFT, '--tls-ca', ca.cert], /^--tls-cert, --tls-key and --tls-ca go together: .*got --tls-ca, missing --tls-cert and --tls-key\)$/);
      rejects([...RAFT, '--tls-cert', join(dir, 'missing.crt'), '--tls-key', cert.key, '--tls-ca', ca.cert], /^--tls-cert: cannot read .*missing\.crt/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
