import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLinearizable } from './checker.js';
import { HistoryRecorder } from './history-recorder.js';
import { kvModel, type KvInput, type KvOutput } from './models/kv.js';

describe('HistoryRecorder', () => {
  it('records calls and returns on a logical clock by default, one tick per event', () => {
    const h = new HistoryRecorder<KvInput, KvOutput>();
    const put = h.invoke('c1', { op: 'put', key: 'x', value: 'a' });
    const get = h.invoke('c2', { op: 'get', key: 'x' });
    h.ok(put, { version: 1 });
    h.ok(get, { found: true, value: 'a', version: 1 });
    assert.deepEqual(h.history(), [
      { clientId: 'c1', input: { op: 'put', key: 'x', value: 'a' }, call: 0, return: 2, output: { version: 1 } },
      { clientId: 'c2', input: { op: 'get', key: 'x' }, call: 1, return: 3, output: { found: true, value: 'a', version: 1 } },
    ]);
    assert.equal(checkLinearizable(kvModel, h.history()).result, 'ok');
  });

  it('takes a clock function or an object with now()', () => {
    let now = 100;
    const fromFunction = new HistoryRecorder<KvInput, KvOutput>(() => now);
    const id = fromFunction.invoke('c1', { op: 'get', key: 'x' });
    now = 150;
    fromFunction.ok(id, { found: false });
    assert.deepEqual([fromFunction.history()[0]?.call, fromFunction.history()[0]?.return], [100, 150]);

    const fromObject = new HistoryRecorder<KvInput, KvOutput>({ now: () => 7 });
    fromObject.ok(fromObject.invoke('c1', { op: 'get', key: 'x' }), { found: false });
    assert.deepEqual([fromObject.history()[0]?.call, fromObject.history()[0]?.return], [7, 7]);
  });

  it('unknown outcomes and operations still pending have no return and no output', () => {
    const h = new HistoryRecorder<KvInput, KvOutput>();
    const timedOut = h.invoke('c1', { op: 'put', key: 'x', value: 'a' });
    h.invoke('c2', { op: 'put', key: 'x', value: 'b' });
    assert.equal(h.pendingCount, 2);
    h.unknown(timedOut);
    assert.equal(h.pendingCount, 1);
    for (const op of h.history()) {
      assert.equal(op.return, undefined);
      assert.equal(op.output, undefined);
    }
  });

  it('discard removes an operation the system certainly did not apply', () => {
    const h = new HistoryRecorder<KvInput, KvOutput>();
    const rejected = h.invoke('c1', { op: 'put', key: 'x', value: 'a' });
    h.discard(rejected);
    const get = h.invoke('c2', { op: 'get', key: 'x' });
    h.ok(get, { found: false });
    assert.equal(h.history().length, 1);
    assert.equal(checkLinearizable(kvModel, h.history()).result, 'ok');
  });

  it('refuses to complete an operation twice, an unknown id, or a missing output', () => {
    const h = new HistoryRecorder<KvInput, KvOutput>();
    const id = h.invoke('c1', { op: 'get', key: 'x' });
    h.ok(id, { found: false });
    assert.throws(() => h.ok(id, { found: false }), /already recorded as ok/);
    assert.throws(() => h.unknown(id), /already recorded as ok/);
    assert.throws(() => h.ok(99, { found: false }), /no such operation/);
    const other = h.invoke('c1', { op: 'get', key: 'x' });
    assert.throws(() => h.ok(other, undefined as unknown as KvOutput), /needs an output/);
  });

  it('refuses a clock that goes backwards, which would invert real-time order', () => {
    const times = [10, 5];
    const h = new HistoryRecorder<KvInput, KvOutput>(() => times.shift() ?? 0);
    const id = h.invoke('c1', { op: 'get', key: 'x' });
    assert.throws(() => h.ok(id, { found: false }), /clock went backwards: 5 after 10/);
  });
});
