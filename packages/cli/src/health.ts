// `concord health`: grpc.health.v1.Health/Check on exactly one address, for Kubernetes exec probes.
// Kubelet's own gRPC probe speaks plaintext only, so a cluster with mutual TLS is probed by running
// this in the pod, with the pod's CONCORD_TLS_* files. No routing and no forwarding: the process
// dialled is the one that answers, so a probe says something about its own pod only.
import { Client, Metadata, credentials as grpcCredentials, status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, tlsCredentials, type TlsOptions } from '@concord/client';

/** The deadline of the check when --timeout is not given: well inside a probe's timeoutSeconds. */
export const DEFAULT_HEALTH_TIMEOUT_MS = 2_000;

/** grpc.health.v1.HealthCheckResponse.ServingStatus, by number. */
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;

export type HealthAnswer = { kind: 'status'; status: string } | { kind: 'error'; code: number; message: string };

/**
 * One Health/Check call to `address` about `service` ('' for the whole server). The two messages
 * have one field each, encoded by hand: HealthCheckRequest {string service = 1},
 * HealthCheckResponse {ServingStatus status = 1}.
 */
export function checkHealth(address: string, service: string, tls: TlsOptions | undefined, timeoutMs: number): Promise<HealthAnswer> {
  const client = new Client(address, tls === undefined ? grpcCredentials.createInsecure() : tlsCredentials(tls), CHANNEL_OPTIONS);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (request: Buffer) => request,
      (response: Buffer) => response,
      encodeRequest(service),
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error: ServiceError | null, response?: Buffer) => {
        client.close();
        if (error !== null || response === undefined) {
          resolve({ kind: 'error', code: error?.code ?? grpcStatus.UNKNOWN, message: error?.details || error?.message || 'no answer' });
        } else {
          const value = decodeStatus(response);
          resolve({ kind: 'status', status: SERVING_STATUS[value as 0 | 1 | 2 | 3] ?? `status ${value}` });
        }
      },
    );
  });
}

function encodeRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  return name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
}

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** Field 1 (status), a varint; absent means 0 (UNKNOWN). Other fields are skipped. */
function decodeStatus(response: Buffer): number {
  let offset = 0;
  const readVarint = (): number => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = response[offset++];
      if (byte === undefined) throw new RangeError('truncated varint');
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  try {
    while (offset < response.length) {
      const key = readVarint();
      const wireType = key & 7;
      if (key >>> 3 === 1 && wireType === 0) return readVarint();
      if (wireType === 0) readVarint();
      else if (wireType === 2) offset += readVarint();
      else if (wireType === 1) offset += 8;
      else if (wireType === 5) offset += 4;
      else return 0;
    }
  } catch {
    return 0;
  }
  return 0;
}
