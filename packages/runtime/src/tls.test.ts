import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { createLogger } from './logging.js';
import { OptionsError, compileOptionSpecs, type OptionSources } from './options.js';
import { COMMON_ROLE_OPTION_SPECS, compileAdvertise } from './role-options.js';
import { ConcordServer } from './server.js';
import { channelCredentials, compileTlsOptions, type RawTlsOptions, type TlsMaterial } from './tls.js';
import { createCertificateAuthority, issueCertificate, type CertificateFiles } from './testing/certificates.js';

let dir: string;
let ca: CertificateFiles;
let server: CertificateFiles;
let client: CertificateFiles;
let otherCaClient: CertificateFiles;
let otherCa: CertificateFiles;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'concord-tls-'));
  ca = createCertificateAuthority(dir, 'ca');
  server = issueCertificate(ca, dir, 'server', { dns: ['localhost'], ips: ['127.0.0.1'] });
  client = issueCertificate(ca, dir, 'client');
  otherCa = createCertificateAuthority(dir, 'other-ca');
  otherCaClient = issueCertificate(otherCa, dir, 'other-client', { dns: ['localhost'], ips: ['127.0.0.1'] });
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** Compiles just the --tls-* settings from argv and env, as a role's compile does. */
function compileTls(argv: string[], env: Record<string, string> = {}): TlsMaterial | undefined {
  const sources: OptionSources = { argv, env };
  const raw = compileOptionSpecs<RawTlsOptions & Record<string, unknown>>(COMMON_ROLE_OPTION_SPECS, sources);
  return compileTlsOptions(raw, sources);
}

function assertOptionsError(run: () => unknown, pattern: RegExp): void {
  assert.throws(run, (error: unknown) => error instanceof OptionsError && pattern.test(error.message));
}

describe('compileTlsOptions', () => {
  it('is plaintext when none of the three files is given', () => {
    assert.equal(compileTls([]), undefined);
  });

  it('reads the three files when all are given, from flags or environment', () => {
    const tls = compileTls(['--tls-cert', server.cert, '--tls-key', server.key], { CONCORD_TLS_CA: ca.cert });
    assert.ok(tls !== undefined);
    assert.match(tls.cert.toString(), /BEGIN CERTIFICATE/);
    assert.match(tls.key.toString(), /PRIVATE KEY/);
    assert.match(tls.ca.toString(), /BEGIN CERTIFICATE/);
  });

  it('refuses some without the others, naming what was given and what is missing', () => {
    assertOptionsError(() => compileTls(['--tls-cert', server.cert]), /go together.*got --tls-cert.*missing --tls-key and --tls-ca/);
    assertOptionsError(() => compileTls([], { CONCORD_TLS_CA: ca.cert }), /got CONCORD_TLS_CA \(for --tls-ca\).*missing --tls-cert and --tls-key/);
  });

  it('refuses a file it cannot read, naming the setting and the file', () => {
    const missing = join(dir, 'nowhere.key');
    assertOptionsError(
      () => compileTls(['--tls-cert', server.cert, '--tls-key', missing, '--tls-ca', ca.cert]),
      new RegExp(`^--tls-key: cannot read ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(.*ENOENT`),
    );
  });

  it('refuses a file that holds no certificate, and a key that is not the certificate\'s', () => {
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    assertOptionsError(() => compileTls(['--tls-cert', server.cert, '--tls-key', server.key, '--tls-ca', garbage]), /^--tls-ca: .*garbage\.pem holds no PEM certificate/);
    assertOptionsError(() => compileTls(['--tls-cert', garbage, '--tls-key', server.key, '--tls-ca', ca.cert]), /^--tls-cert: .*holds no PEM certificate/);
    assertOptionsError(() => compileTls(['--tls-cert', server.cert, '--tls-key', garbage, '--tls-ca', ca.cert]), /^--tls-key: .*holds no PEM private key/);
    assertOptionsError(
      () => compileTls(['--tls-cert', server.cert, '--tls-key', client.key, '--tls-ca', ca.cert]),
      /^--tls-key: .*client\.key is not the private key of the certificate in --tls-cert .*server\.crt/,
    );
  });
});

describe('compileAdvertise', () => {
  it('takes a host name or address another process can dial, or nothing', () => {
    const sources = { argv: [], env: {} };
    assert.equal(compileAdvertise('', sources), '');
    assert.equal(compileAdvertise('concord-shard-g1-0.concord-shard-g1.default.svc.cluster.local:7100', sources), 'concord-shard-g1-0.concord-shard-g1.default.svc.cluster.local:7100');
    assert.equal(compileAdvertise('[fd00::5]:7100', sources), '[fd00::5]:7100');
  });

  it('refuses port 0 and wildcard hosts, naming where the value came from', () => {
    assertOptionsError(() => compileAdvertise('10.0.0.5:0', { argv: ['--advertise', '10.0.0.5:0'], env: {} }), /^--advertise: .*port from 1 to 65535/);
    assertOptionsError(() => compileAdvertise('0.0.0.0:7100', { argv: [], env: { CONCORD_ADVERTISE: '0.0.0.0:7100' } }), /^CONCORD_ADVERTISE \(for --advertise\): .*not 0\.0\.0\.0/);
    assertOptionsError(() => compileAdvertise('[::]:7100', { argv: [], env: {} }), /not ::/);
  });
});

function quietLogger() {
  return createLogger({ service: 'test', level: 'error', destination: new Writable({ write: (_chunk, _encoding, callback) => callback() }) });
}

type HealthClient = grpc.Client & {
  check(request: { service: string }, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: { status: string }) => void): void;
};

function healthCheck(address: string, credentials: grpc.ChannelCredentials): Promise<{ status?: string; error?: grpc.ServiceError }> {
  const Health = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, 'Health');
  const health = new Health(address, credentials) as unknown as HealthClient;
  return new Promise((resolve) => {
    health.check({ service: '' }, { deadline: Date.now() + 5_000 }, (error, response) => {
      health.close();
      resolve(error === null ? { status: response.status } : { error });
    });
  });
}

describe('ConcordServer with mutual TLS', () => {
  it('serves clients presenting a certificate of its CA, and refuses plaintext clients and certificates of another CA', async () => {
    const tls = compileTls(['--tls-cert', server.cert, '--tls-key', server.key, '--tls-ca', ca.cert])!;
    const concord = await ConcordServer.start({ host: '127.0.0.1', port: 0, services: [], logger: quietLogger(), tls });
    try {
      const clientTls = compileTls(['--tls-cert', client.cert, '--tls-key', client.key, '--tls-ca', ca.cert]);
      assert.deepEqual(await healthCheck(concord.address, channelCredentials(clientTls)), { status: 'SERVING' });
      // By name too: the certificate names localhost as well as 127.0.0.1.
      assert.deepEqual(await healthCheck(`localhost:${concord.port}`, channelCredentials(clientTls)), { status: 'SERVING' });

      const plaintext = await healthCheck(concord.address, grpc.credentials.createInsecure());
      assert.equal(plaintext.error?.code, grpc.status.UNAVAILABLE, `plaintext: ${plaintext.error?.message}`);

      // Trusts the server, but presents a certificate the server's CA did not sign.
      const foreign = await healthCheck(concord.address, grpc.credentials.createSsl(readCa(), readFileSync(otherCaClient.key), readFileSync(otherCaClient.cert)));
      assert.equal(foreign.error?.code, grpc.status.UNAVAILABLE, `foreign client certificate: ${foreign.error?.message}`);

      // Trusts the server, presents no certificate at all.
      const anonymous = await healthCheck(concord.address, grpc.credentials.createSsl(readCa()));
      assert.equal(anonymous.error?.code, grpc.status.UNAVAILABLE, `no client certificate: ${anonymous.error?.message}`);

      // Presents a good certificate but does not trust the server's CA.
      const distrustful = await healthCheck(concord.address, grpc.credentials.createSsl(readFileSync(otherCa.cert), readFileSync(client.key), readFileSync(client.cert)));
      assert.equal(distrustful.error?.code, grpc.status.UNAVAILABLE, `server not trusted: ${distrustful.error?.message}`);
    } finally {
      await concord.shutdown();
    }
  });
});

describe('channelCredentials', () => {
  it("checks the server's certificate names the address dialled, IP address or host name", async () => {
    // A certificate of the right CA, but for neither 127.0.0.1 nor localhost.
    const tls = compileTls(['--tls-cert', client.cert, '--tls-key', client.key, '--tls-ca', ca.cert])!;
    const concord = await ConcordServer.start({ host: '127.0.0.1', port: 0, services: [], logger: quietLogger(), tls });
    try {
      for (const address of [concord.address, `localhost:${concord.port}`]) {
        const answer = await healthCheck(address, channelCredentials(tls));
        assert.equal(answer.error?.code, grpc.status.UNAVAILABLE, `${address}: ${answer.error?.message ?? 'answered'}`);
        assert.match(answer.error?.details ?? '', /altnames|Hostname\/IP does not match/i);
      }
    } finally {
      await concord.shutdown();
    }
  });
});

function readCa(): Buffer {
  return readFileSync(ca.cert);
}
