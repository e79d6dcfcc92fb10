// Option validation: a bad value fails construction with a message naming the setting.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { newCore } from './testing/helpers.js';

describe('RaftCoreOptions validation', () => {
  it('rejects values that would break timing or flow control, naming the setting', () => {
    const cases: [Parameters<typeof newCore>[2], RegExp][] = [
      [{ electionTicks: 0 }, /electionTicks must be a positive integer/],
      [{ heartbeatTicks: 10, electionTicks: 10 }, /heartbeatTicks \(10\) must be less than electionTicks \(10\)/],
      [{ maxAppendEntries: 0 }, /maxAppendEntries/],
      [{ maxAppendBytes: 1.5 }, /maxAppendBytes/],
      [{ maxInflightAppends: -1 }, /maxInflightAppends/],
      [{ readOnlyMode: 'lease_based', checkQuorum: true, leaseSafetyMarginTicks: 10 }, /leaseSafetyMarginTicks \(10\) must be less than electionTicks/],
    ];
    for (const [options, message] of cases) assert.throws(() => newCore('1', ['1'], options), message);
  });

  it('rejects a random source outside [0, 1)', () => {
    assert.throws(() => newCore('1', ['1'], { random: () => 1 }), /must return a number in \[0, 1\)/);
  });

  it('rejects a malformed bootstrap membership', () => {
    assert.throws(() => newCore('1', ['1', '1']), /lists node 1 twice/);
    assert.throws(() => newCore('1', ['1', '2'], { learners: ['2'] }), /lists node 2 twice/);
  });
});
