import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { CLEAR_SCREEN, DEFAULT_WATCH_SECONDS, parseWatchCount, parseWatchSeconds, watchStatus, type Snapshot } from './status-watch.js';

/** A stream that keeps what was written to it. */
function capture(): { out: PassThrough; text: () => string } {
  const out = new PassThrough();
  const chunks: string[] = [];
  out.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  return { out, text: () => chunks.join('') };
}

/** Snapshots "view 1\n", "view 2\n", …; the ones whose number is in `failing` report a failure. */
function numbered(failing: readonly number[] = []): { snapshot: () => Promise<Snapshot>; taken: () => number } {
  let taken = 0;
  return {
    snapshot: async () => {
      taken += 1;
      return failing.includes(taken) ? { ok: false, text: `no status: failure ${taken}\n` } : { ok: true, text: `view ${taken}\n` };
    },
    taken: () => taken,
  };
}

describe('watchStatus', () => {
  it('prints --count snapshots, separated by a blank line when the output is not a terminal', async () => {
    const { out, text } = capture();
    const source = numbered();
    const result = await watchStatus({ snapshot: source.snapshot, intervalMs: 0, count: 3, out, clearScreen: false, signal: new AbortController().signal });
    assert.deepEqual(result, { snapshots: 3, failures: 0 });
    assert.equal(text(), 'view 1\n\nview 2\n\nview 3\n');
    assert.equal(source.taken(), 3);
  });

  it('clears the screen before every snapshot on a terminal, with the heading on top', async () => {
    const { out, text } = capture();
    let headings = 0;
    await watchStatus({
      snapshot: numbered().snapshot,
      intervalMs: 0,
      count: 2,
      out,
      clearScreen: true,
      signal: new AbortController().signal,
      heading: () => `heading ${++headings}`,
    });
    assert.equal(text(), `${CLEAR_SCREEN}heading 1\nview 1\n${CLEAR_SCREEN}heading 2\nview 2\n`);
  });

  it('goes on after a snapshot that failed, and counts it', async () => {
    const { out, text } = capture();
    const result = await watchStatus({ snapshot: numbered([2]).snapshot, intervalMs: 0, count: 3, out, clearScreen: false, signal: new AbortController().signal });
    assert.deepEqual(result, { snapshots: 3, failures: 1 });
    assert.match(text(), /view 1\n\nno status: failure 2\n\nview 3\n/);
  });

  it('ends when the signal aborts while it waits for the next refresh', async () => {
    const { out, text } = capture();
    const stop = new AbortController();
    const source = numbered();
    // An hour between refreshes: only the abort can end this watch.
    const watching = watchStatus({
      snapshot: async () => {
        const snapshot = await source.snapshot();
        setImmediate(() => stop.abort());
        return snapshot;
      },
      intervalMs: 3_600_000,
      out,
      clearScreen: false,
      signal: stop.signal,
    });
    assert.deepEqual(await watching, { snapshots: 1, failures: 0 });
    assert.equal(text(), 'view 1\n');
  });

  it('ends at once when the signal aborts during a snapshot, without printing it', async () => {
    const { out, text } = capture();
    const stop = new AbortController();
    const result = await watchStatus({
      snapshot: () => {
        stop.abort();
        return new Promise<Snapshot>(() => undefined); // a status call that never answers
      },
      intervalMs: 0,
      out,
      clearScreen: false,
      signal: stop.signal,
    });
    assert.deepEqual(result, { snapshots: 0, failures: 0 });
    assert.equal(text(), '');
  });
});

describe('parseWatchSeconds and parseWatchCount', () => {
  it('takes --watch without a value as the default interval, and fractions of a second', () => {
    assert.equal(parseWatchSeconds(true), DEFAULT_WATCH_SECONDS);
    assert.equal(parseWatchSeconds('5'), 5);
    assert.equal(parseWatchSeconds('0.5'), 0.5);
  });

  it('refuses intervals that are not numbers or too short, naming the flag', () => {
    for (const bad of ['0', '0.01', '-1', 'soon', '', 'Infinity']) {
      assert.throws(() => parseWatchSeconds(bad), /^Error: --watch: .*at least 0\.1/, bad);
    }
  });

  it('takes a whole --count of at least one', () => {
    assert.equal(parseWatchCount('2'), 2);
    for (const bad of ['0', '1.5', '-2', 'two']) assert.throws(() => parseWatchCount(bad), /^Error: --count: /, bad);
  });
});
