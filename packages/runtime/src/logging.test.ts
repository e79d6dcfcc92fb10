import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { activeTraceFields, createLogger } from './logging.js';

function capture(options: { level?: string; memberId?: string }) {
  const chunks: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  const logger = createLogger({ service: 'shard', ...options, destination });
  const lines = () => chunks.join('').split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines };
}

test('one JSON object a line with service, member id, level name and ISO time', () => {
  const { logger, lines } = capture({ memberId: 'shard-0-1' });
  logger.info({ term: 3 }, 'became leader');
  const [line] = lines();
  assert.equal(line?.['service'], 'shard');
  assert.equal(line?.['member_id'], 'shard-0-1');
  assert.equal(line?.['level'], 'info');
  assert.equal(line?.['msg'], 'became leader');
  assert.equal(line?.['term'], 3);
  assert.match(String(line?.['time']), /^\d{4}-\d\d-\d\dT/);
  assert.equal('trace_id' in (line ?? {}), false);
});

test('the level option filters; default is info', () => {
  const quiet = capture({});
  quiet.logger.debug('hidden');
  quiet.logger.info('shown');
  assert.deepEqual(quiet.lines().map((line) => line['msg']), ['shown']);
  const verbose = capture({ level: 'debug' });
  verbose.logger.debug('visible');
  assert.deepEqual(verbose.lines().map((line) => line['msg']), ['visible']);
  assert.equal(verbose.lines()[0]?.['member_id'], undefined);
});

test('no trace fields outside a span', () => {
  assert.deepEqual(activeTraceFields(), {});
});
