import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { ConcordServer, createLogger } from '@concord/runtime';
import type { ConsensusStatus } from '../types.js';
import {
  BootstrapGuard,
  BootstrapRefusedError,
  decideBootstrap,
  probePeers,
  raftDataIsEmpty,
  refusalMessage,
  type BootstrapInput,
  type PeerProbe,
} from './bootstrap-guard.js';
import { HeardFromLedger } from './heard-from-ledger.js';
import { ConsensusPeerService } from './peer-service.js';
import { RaftStorage } from './raft-storage.js';

const logger = createLogger({ service: 'bootstrap-guard-test', level: 'silent' });
const PEERS = new Map([
  ['g1-0', '127.0.0.1:7101'],
  ['g1-1', '127.0.0.1:7102'],
]);

type Answered = Extract<PeerProbe, { kind: 'answered' }>;

function answered(peerId: string, fields: Partial<Answered>): Answered {
  return {
    peerId,
    address: PEERS.get(peerId) ?? 'nowhere:1',
    kind: 'answered',
    state: 'running',
    memberId: peerId,
    term: 0,
    commitIndex: 0,
    appliedIndex: 0,
    snapshotIndex: 0,
    voters: [],
    learners: [],
    heardFromMember: false,
    ...fields,
  };
}

/** A peer of a group that has run for a while, with g1-2 a voter. */
function running(peerId: string, fields: Partial<Answered> = {}): Answered {
  return answered(peerId, { term: 3, commitIndex: 57, appliedIndex: 57, voters: ['g1-0', 'g1-1', 'g1-2'], ...fields });
}

function unreachable(peerId: string): PeerProbe {
  return { peerId, address: PEERS.get(peerId)!, kind: 'unreachable', error: 'connect ECONNREFUSED' };
}

function decide(probes: PeerProbe[], fields: Partial<BootstrapInput> = {}) {
  return decideBootstrap({
    memberId: 'g1-2',
    join: false,
    peers: PEERS,
    probes: new Map(probes.map((probe) => [probe.peerId, probe])),
    windowOver: false,
    ...fields,
  });
}

describe('decideBootstrap: may a member with an empty data dir bootstrap from --peers?', () => {
  it('bootstraps a fresh group: every peer is itself empty and asking', () => {
    const decision = decide([answered('g1-0', { state: 'bootstrapping' }), answered('g1-1', { state: 'bootstrapping' })]);
    assert.deepEqual(decision, { kind: 'bootstrap', unsettled: [] });
  });

  it('bootstraps a founding member that starts late: the others elected a leader, but never heard from it', () => {
    const decision = decide([running('g1-0'), running('g1-1')]);
    assert.deepEqual(decision, { kind: 'bootstrap', unsettled: [] });
  });

  it('refuses a member that lost its data: a peer with a log heard from it while it was a member', () => {
    const decision = decide([running('g1-0'), running('g1-1', { heardFromMember: true })]);
    assert.equal(decision.kind, 'refuse');
    assert.equal(decision.kind === 'refuse' && decision.evidence.peerId, 'g1-1');
    assert.equal(decision.kind === 'refuse' && decision.reason, 'heard_from');
  });

  it('refuses at once, without waiting for a peer that is still unreachable', () => {
    const decision = decide([unreachable('g1-0'), running('g1-1', { heardFromMember: true })]);
    assert.equal(decision.kind, 'refuse');
  });

  it('refuses when a peer still recovering its log says it heard from the member', () => {
    const decision = decide([answered('g1-0', { state: 'recovering', heardFromMember: true }), running('g1-1')]);
    assert.equal(decision.kind, 'refuse');
  });

  it('lets a removed member id come back: heard from once, but no longer in the membership', () => {
    const decision = decide([running('g1-0', { voters: ['g1-0', 'g1-1'], heardFromMember: true }), running('g1-1', { voters: ['g1-0', 'g1-1'] })]);
    assert.equal(decision.kind, 'bootstrap');
  });

  it('with --join: refuses a member its peers list as a voter (promoted only once it held the log)', () => {
    const decision = decide([running('g1-0'), running('g1-1')], { join: true });
    assert.equal(decision.kind, 'refuse');
    assert.equal(decision.kind === 'refuse' && decision.reason, 'voter');
  });

  it('with --join: lets a new member in, whether or not it was already added as a learner', () => {
    const notAdded = decide([running('g1-0', { voters: ['g1-0', 'g1-1'] }), running('g1-1', { voters: ['g1-0', 'g1-1'] })], { join: true });
    assert.equal(notAdded.kind, 'bootstrap');
    const learner = decide([running('g1-0', { voters: ['g1-0', 'g1-1'], learners: ['g1-2'] }), running('g1-1', { voters: ['g1-0', 'g1-1'], learners: ['g1-2'] })], {
      join: true,
    });
    assert.equal(learner.kind, 'bootstrap');
  });

  it('waits for peers that are unreachable, do not host the group yet or are still recovering, until the window ends', () => {
    const probes = [unreachable('g1-0'), answered('g1-1', { state: 'absent' })];
    const waiting = decide(probes);
    assert.equal(waiting.kind, 'wait');
    assert.deepEqual(waiting.kind === 'wait' && waiting.unsettled.map((probe) => probe.peerId), ['g1-0', 'g1-1']);
    const over = decide(probes, { windowOver: true });
    assert.equal(over.kind, 'bootstrap');
    assert.deepEqual(over.kind === 'bootstrap' && over.unsettled.map((probe) => probe.peerId), ['g1-0', 'g1-1']);
    assert.equal(decide([answered('g1-0', { state: 'recovering' }), running('g1-1')]).kind, 'wait');
    // A peer never asked counts as unreachable.
    assert.equal(decide([running('g1-1')]).kind, 'wait');
  });

  it('words the refusal with the member, the group, the peer that knows it and both ways out', () => {
    const decision = decide([running('g1-0', { heardFromMember: true }), running('g1-1')]);
    assert.equal(decision.kind, 'refuse');
    if (decision.kind !== 'refuse') return;
    const message = refusalMessage('g1', 'g1-2', '/data/g1-2', decision);
    for (const part of ['member g1-2 of group g1 refuses to start', '/data/g1-2', 'g1-0 at 127.0.0.1:7101', 'term 3', 'concord member remove g1 g1-2', '--join', 'Replace a dead replica']) {
      assert.ok(message.includes(part), `${JSON.stringify(part)} in: ${message}`);
    }
  });
});

describe('raftDataIsEmpty', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  const tempDir = async (): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), 'concord-guard-'));
    dirs.push(dir);
    return dir;
  };

  it('is true for a missing folder and for a log opened but never written, false once bootstrapped', async () => {
    const dataDir = await tempDir();
    assert.equal(await raftDataIsEmpty(join(dataDir, 'missing')), true);
    const opened = await RaftStorage.open({ dir: join(dataDir, 'raft') });
    await opened.storage.close();
    assert.equal(await raftDataIsEmpty(dataDir), true);
    const again = await RaftStorage.open({ dir: join(dataDir, 'raft') });
    await again.storage.bootstrap({ voters: ['a', 'b', 'c'], addresses: { a: 'h:1', b: 'h:2', c: 'h:3' } });
    await again.storage.close();
    assert.equal(await raftDataIsEmpty(dataDir), false);
  });
});

describe('BootstrapGuard over a real peer service', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  /** A process hosting member `memberId` of g1, with its data dir and a controllable status. */
  async function peer(memberId: string, dataDir: string) {
    const peerService = new ConsensusPeerService({ logger });
    const server = await ConcordServer.start({ host: '127.0.0.1', port: 0, services: [peerService.binding()], logger, shutdownGraceMs: 100 });
    const guard = await BootstrapGuard.open({ groupId: 'g1', memberId, dataDir, peerService, logger });
    cleanups.push(async () => {
      await guard.close();
      peerService.close();
      await server.shutdown();
    });
    return { guard, address: server.address };
  }

  function status(voters: string[]): ConsensusStatus {
    return {
      engine: 'raft',
      memberId: 'g1-0',
      role: 'leader',
      term: 2,
      commitIndex: 10,
      appliedIndex: 10,
      snapshotIndex: 0,
      members: voters.map((memberId) => ({ memberId, address: `${memberId}:1`, voter: true })),
    };
  }

  it('records whom it hears from on disk, answers Probe from it, and forgets removed members', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'concord-guard-peer-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const founder = await RaftStorage.open({ dir: join(dataDir, 'raft') });
    await founder.storage.bootstrap({ voters: ['g1-0', 'g1-1', 'g1-2'], addresses: {} });
    await founder.storage.close();

    const { guard, address } = await peer('g1-0', dataDir);
    assert.equal(guard.emptyDataDir, false);
    let voters = ['g1-0', 'g1-1', 'g1-2'];
    guard.running(() => status(voters));
    const ask = (join = false) =>
      probePeers({ groupId: 'g1', memberId: 'g1-2', join, peers: new Map([['g1-0', address]]), credentials: credentials.createInsecure(), timeoutMs: 2_000 });

    // Not heard from yet: a late founder may bootstrap.
    assert.equal((await ask()).kind, 'bootstrap');
    guard.heard('g1-2');
    const refused = await ask();
    assert.equal(refused.kind, 'refuse');
    assert.equal(refused.kind === 'refuse' && refused.evidence.term, 2);
    await guard.close();
    const ledger = await HeardFromLedger.open(dataDir, logger);
    assert.deepEqual(ledger.list(), ['g1-2']);

    // Removed from the group: forgotten, and its id may come back; a non-member is never recorded.
    const reopened = await peer('g1-0', dataDir);
    voters = ['g1-0', 'g1-1'];
    reopened.guard.running(() => status(voters));
    reopened.guard.heard('g1-2');
    const again = await probePeers({
      groupId: 'g1',
      memberId: 'g1-2',
      join: false,
      peers: new Map([['g1-0', reopened.address]]),
      credentials: credentials.createInsecure(),
      timeoutMs: 2_000,
    });
    assert.equal(again.kind, 'bootstrap');
    await reopened.guard.close();
    assert.deepEqual((await HeardFromLedger.open(dataDir, logger)).list(), []);
  });

  it('check() throws BootstrapRefusedError for a member its peers heard from, and lets a fresh group form', async () => {
    const peerDir = await mkdtemp(join(tmpdir(), 'concord-guard-peer-'));
    const emptyDir = await mkdtemp(join(tmpdir(), 'concord-guard-empty-'));
    cleanups.push(() => rm(peerDir, { recursive: true, force: true }), () => rm(emptyDir, { recursive: true, force: true }));

    // A fresh group: the peer is itself empty and asking, so it answers BOOTSTRAPPING at once.
    const fresh = await peer('g1-0', peerDir);
    assert.equal(fresh.guard.emptyDataDir, true);
    const asking = await peer('g1-2', emptyDir);
    const options = { join: false, credentials: credentials.createInsecure(), timeoutMs: 5_000, force: false };
    await asking.guard.check({ ...options, peers: { 'g1-0': fresh.address, 'g1-2': asking.address } });

    fresh.guard.running(() => status(['g1-0', 'g1-1', 'g1-2']));
    fresh.guard.heard('g1-2');
    await assert.rejects(
      asking.guard.check({ ...options, peers: { 'g1-0': fresh.address, 'g1-2': asking.address } }),
      (error: unknown) => error instanceof BootstrapRefusedError && error.evidence.peerId === 'g1-0' && /refuses to start/.test(error.message),
    );
    // --force-bootstrap asks nobody.
    await asking.guard.check({ ...options, force: true, peers: { 'g1-0': fresh.address, 'g1-2': asking.address } });
  });

  it('bootstraps after the window when no peer answers', async () => {
    const emptyDir = await mkdtemp(join(tmpdir(), 'concord-guard-alone-'));
    cleanups.push(() => rm(emptyDir, { recursive: true, force: true }));
    const alone = await peer('g1-2', emptyDir);
    // Port 1 on the loopback: nothing listens there.
    const decision = await probePeers({
      groupId: 'g1',
      memberId: 'g1-2',
      join: false,
      peers: new Map([['g1-0', '127.0.0.1:1']]),
      credentials: credentials.createInsecure(),
      timeoutMs: 300,
      retryMs: 50,
    });
    assert.equal(decision.kind, 'bootstrap');
    assert.equal(decision.kind === 'bootstrap' && decision.unsettled[0]?.kind, 'unreachable');
    assert.equal(alone.guard.emptyDataDir, true);
  });
});
