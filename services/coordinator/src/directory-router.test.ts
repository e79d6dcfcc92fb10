// The coordinator's router follows the replicated directory: a replaced replica address is used
// from the next call on, at the same ring epoch (no WRONG_SHARD would ever tell it).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { ReadConsistency } from '@concord/proto/common';
import { ServiceError } from '@concord/runtime';
import type { ShardNode } from '@concord/shard';
import { NO_RING_MESSAGE, ShardDirectory } from './directory.js';
import { createDirectoryRouter } from './directory-router.js';
import { encodeMetaCommand, type MetaCommand } from './meta/commands.js';
import { MetaStateMachine } from './meta/meta-state-machine.js';
import { startTestShards } from './testing.js';

describe('createDirectoryRouter', () => {
  let root: string;
  /** Two unrelated single-replica deployments of group g1, told apart by their data. */
  let first: ShardNode;
  let second: ShardNode;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'concord-directory-router-test-'));
    first = (await startTestShards(join(root, 'first'), ['g1']))[0]!;
    second = (await startTestShards(join(root, 'second'), ['g1']))[0]!;
  });

  after(async () => {
    await first?.stop();
    await second?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('routes with the directory the meta state machine applied, and reloads when it changes', async () => {
    const machine = new MetaStateMachine();
    let index = 0;
    const apply = (command: MetaCommand) => machine.apply(encodeMetaCommand(command), ++index);
    const { router, refreshIfChanged } = createDirectoryRouter(new ShardDirectory(() => machine.directory));
    const read = async (key: string) => (await router.get({ key, consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE })).value.toString();
    try {
      // No ring yet: the call fails UNAVAILABLE, saying why.
      await assert.rejects(router.put({ key: 'k', value: Buffer.from('x'), expectedVersion: undefined }), (error: unknown) => {
        assert.ok(error instanceof ServiceError);
        assert.equal(error.code, status.UNAVAILABLE);
        assert.equal(error.message, NO_RING_MESSAGE);
        return true;
      });

      apply({ type: 'bootstrap', ringEpoch: 1, vnodes: 128, groups: [{ groupId: 'g1', addresses: [first.address] }] });
      await refreshIfChanged();
      await router.put({ key: 'k', value: Buffer.from('on the first'), expectedVersion: undefined });
      assert.equal(await read('k'), 'on the first');

      assert.equal(apply({ type: 'set_group_addresses', groupId: 'g1', addresses: [second.address] }).kind, 'applied');
      // The router's table is still the old one until it is told.
      assert.equal(await read('k'), 'on the first');
      await refreshIfChanged();
      assert.equal(await read('k'), '');
      await router.put({ key: 'k', value: Buffer.from('on the second'), expectedVersion: undefined });
      assert.equal(await read('k'), 'on the second');
      // Nothing changed since: no reload, same answers.
      await refreshIfChanged();
      assert.equal(await read('k'), 'on the second');
    } finally {
      router.close();
    }
  });
});
