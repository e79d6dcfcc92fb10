import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { buildProgram } from './program.js';
import { readTlsFlags, tlsFlagsForRole } from './tls-flags.js';

describe('readTlsFlags', () => {
  it('is plaintext without flags, and reads all three files when given', () => {
    assert.equal(readTlsFlags({}), undefined);
    const dir = mkdtempSync(join(tmpdir(), 'concord-cli-tls-'));
    try {
      for (const name of ['ca', 'cert', 'key']) writeFileSync(join(dir, name), `${name} pem`);
      const tls = readTlsFlags({ tlsCa: join(dir, 'ca'), tlsCert: join(dir, 'cert'), tlsKey: join(dir, 'key') });
      assert.deepEqual([tls?.ca.toString(), tls?.cert?.toString(), tls?.key?.toString()], ['ca pem', 'cert pem', 'key pem']);
      assert.throws(
        () => readTlsFlags({ tlsCa: join(dir, 'ca'), tlsCert: join(dir, 'cert'), tlsKey: join(dir, 'missing') }),
        /^Error: --tls-key: cannot read .*missing \(ENOENT/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses some of the three without the others, naming what is missing', () => {
    assert.throws(() => readTlsFlags({ tlsCa: 'ca.crt' }), /go together.*got --tls-ca, missing --tls-cert and --tls-key/);
  });
});

describe('tlsFlagsForRole', () => {
  const quiet = new Writable({ write: (_chunk, _encoding, callback) => callback() });

  it('hands the --tls-* flags of `concord serve <role>` on to the role', () => {
    const program = buildProgram({ env: {}, stdout: quiet, stderr: quiet });
    // What commander does with them: the program's own options, taken wherever they appear.
    program.parseOptions(['serve', 'shard', '--tls-ca', 'ca.crt', '--listen', '0.0.0.0:7100', '--tls-cert=shard.crt']);
    assert.deepEqual(tlsFlagsForRole(program), ['--tls-ca', 'ca.crt', '--tls-cert', 'shard.crt']);
  });

  it('refuses a client flag given to `concord serve <role>` instead of dropping it', async () => {
    for (const flag of ['--timeout=100', '--addr=127.0.0.1:1', '--routing=coordinator']) {
      const program = buildProgram({ env: {}, stdout: quiet, stderr: quiet });
      program.exitOverride();
      await assert.rejects(
        program.parseAsync(['node', 'concord', 'serve', 'shard', '--listen', '127.0.0.1:0', flag]),
        new RegExp(`serve: ${flag.slice(0, flag.indexOf('='))} is a flag of the client commands, not of a shard`),
      );
    }
  });
});
