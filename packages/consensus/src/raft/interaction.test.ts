// Replays every golden interaction script in testdata/raft/*.txt and compares the trace with the
// file. UPDATE_GOLDEN=1 rewrites the files with the actual traces (review the diff before keeping it).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runScript } from './testing/interaction.js';

// src/raft/ and dist/raft/ are both two levels below the package root.
const testdata = fileURLToPath(new URL('../../testdata/raft/', import.meta.url));
const update = process.env.UPDATE_GOLDEN === '1';

describe('raft interaction scripts (testdata/raft)', () => {
  const files = readdirSync(testdata)
    .filter((name) => name.endsWith('.txt'))
    .sort();
  it('finds the scripts', () => {
    assert.ok(files.length > 0, `no scripts in ${testdata}`);
  });
  for (const name of files) {
    it(name, () => {
      const path = testdata + name;
      const source = readFileSync(path, 'utf8');
      const { expected, actual } = runScript(source);
      if (update) {
        if (actual !== source) writeFileSync(path, actual);
        return;
      }
      assert.equal(actual, expected, `${name}: trace differs (UPDATE_GOLDEN=1 regenerates it)`);
    });
  }
});
