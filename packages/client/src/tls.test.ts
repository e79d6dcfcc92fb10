import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { credentials } from '@grpc/grpc-js';
import { ConcordClient } from './concord-client.js';
import { tlsCredentials } from './tls.js';

// The handshakes themselves (a Concord cluster with --tls-*, trusted and refused clients) are
// tested with real processes in tests/src/tls.test.ts.
describe('tls', () => {
  const pem = Buffer.from('-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');

  it('takes cert and key together or not at all', () => {
    assert.throws(() => tlsCredentials({ ca: pem, cert: pem }), /cert and key go together/);
    assert.throws(() => tlsCredentials({ ca: pem, key: pem }), /cert and key go together/);
  });

  it('is given as tls or as credentials, not both', async () => {
    await assert.rejects(
      ConcordClient.connect({ address: '127.0.0.1:1', tls: { ca: pem }, credentials: credentials.createInsecure() }),
      /give tls or credentials, not both/,
    );
  });
});
