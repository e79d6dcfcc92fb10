// The lean load generator of the Raft benchmark (`--client h2`): unary gRPC calls made straight on
// a node:http2 session, for both systems alike: the request encoded once by the caller, framed
// with gRPC's 5-byte prefix, sent as one DATA frame; the answer's status read from its trailers.
//
// Why: with each system's own Node client (grpc-js under both the generated Concord stub and the
// etcd3 package), the load generator spends 60 to 70 µs of CPU per put and allocates 30 to 40 KB,
// and its garbage collections are in most of the slowest requests of either system
// (docs/performance.md). A client that does less per call measures the servers more and itself less.
import http2 from 'node:http2';
import { status as grpcStatus } from '@grpc/grpc-js';

/** What a failed call rejects with: `code` is the gRPC status, as grpc-js's errors have it. */
export class H2GrpcError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${grpcStatus[code] ?? `code ${code}`}: ${details}`);
    this.name = 'H2GrpcError';
  }
}

const REQUEST_BASE = { ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' } as const;

/** One HTTP/2 connection to a gRPC server, for unary calls. */
export class H2GrpcChannel {
  private readonly session: http2.ClientHttp2Session;

  /** `target`: host:port, or an http:// URL. */
  constructor(target: string) {
    this.session = http2.connect(target.startsWith('http://') ? target : `http://${target}`, { settings: { enablePush: false } });
    // A broken connection fails the calls on it (their streams end with an error); this keeps the
    // session's own 'error' from being thrown.
    this.session.on('error', () => undefined);
  }

  /** Calls `path` with the serialized `message`; resolves to the serialized answer. */
  unary(path: string, message: Uint8Array, deadlineMs: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const framed = Buffer.allocUnsafe(5 + message.byteLength);
      framed[0] = 0;
      framed.writeUInt32BE(message.byteLength, 1);
      framed.set(message, 5);
      let stream: http2.ClientHttp2Stream;
      try {
        stream = this.session.request({ ...REQUEST_BASE, ':path': path, 'grpc-timeout': `${Math.ceil(deadlineMs)}m` }, { endStream: false });
      } catch (error) {
        // The session is gone (closed, or failed to connect).
        reject(new H2GrpcError(grpcStatus.UNAVAILABLE, error instanceof Error ? error.message : String(error)));
        return;
      }
      let first: Buffer | undefined;
      let more: Buffer[] | undefined;
      let code: number | undefined;
      let details = '';
      const readStatus = (headers: http2.IncomingHttpHeaders): void => {
        const value = headers['grpc-status'];
        if (value === undefined) return;
        code = Number(value);
        const text = headers['grpc-message'];
        if (typeof text === 'string') details = decodeURIComponent(text);
      };
      // A trailers-only answer (an error, usually) carries its status in the headers.
      stream.on('response', readStatus);
      stream.on('trailers', readStatus);
      stream.on('data', (chunk: Buffer) => {
        if (first === undefined) first = chunk;
        else (more ??= [first]).push(chunk);
      });
      stream.on('error', () => undefined);
      stream.on('close', () => {
        if (code === undefined) {
          reject(new H2GrpcError(grpcStatus.UNAVAILABLE, `stream closed without a gRPC status (HTTP/2 code ${stream.rstCode})`));
          return;
        }
        if (code !== grpcStatus.OK) {
          reject(new H2GrpcError(code, details));
          return;
        }
        const body = more === undefined ? first : Buffer.concat(more);
        if (body === undefined || body.length < 5 || body.readUInt32BE(1) !== body.length - 5) {
          reject(new H2GrpcError(grpcStatus.INTERNAL, 'an answer that is not one whole gRPC message'));
          return;
        }
        resolve(body.subarray(5));
      });
      stream.end(framed);
    });
  }

  close(): void {
    this.session.close();
  }
}

// ------------------------------------------------------------ etcd's messages, by hand

/** etcd's PutRequest { key = 1; value = 2 } (etcdserverpb, rpc.proto). */
export function etcdPutRequest(key: string, value: Uint8Array): Buffer {
  return Buffer.concat([bytesField(1, Buffer.from(key)), bytesField(2, value)]);
}

/** etcd's RangeRequest { key = 1 }: one key, linearizable (serializable unset). */
export function etcdRangeRequest(key: string): Buffer {
  return bytesField(1, Buffer.from(key));
}

/** The value of the first KeyValue (kvs = 2; its value = 5) of etcd's RangeResponse, if any. */
export function etcdRangeValue(response: Buffer): Buffer | undefined {
  const kv = firstBytesField(response, 2);
  return kv === undefined ? undefined : (firstBytesField(kv, 5) ?? Buffer.alloc(0));
}

function bytesField(field: number, bytes: Uint8Array): Buffer {
  const head: number[] = [(field << 3) | 2];
  for (let length = bytes.byteLength; ; length = Math.floor(length / 128)) {
    if (length < 128) {
      head.push(length);
      break;
    }
    head.push((length % 128) | 128);
  }
  return Buffer.concat([Buffer.from(head), bytes]);
}

/** The first length-delimited field `field` of a protobuf message; other fields are skipped. */
function firstBytesField(message: Buffer, field: number): Buffer | undefined {
  let at = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 1; ; shift *= 128) {
      if (at >= message.length) throw new Error('a protobuf message ends inside a varint');
      const byte = message[at++]!;
      value += (byte & 127) * shift;
      if (byte < 128) return value;
    }
  };
  while (at < message.length) {
    const tag = varint();
    const wireType = tag % 8;
    if (wireType === 0) varint();
    else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else if (wireType === 2) {
      const length = varint();
      if (at + length > message.length) throw new Error('a protobuf field runs past its message');
      if (Math.floor(tag / 8) === field) return message.subarray(at, at + length);
      at += length;
    } else throw new Error(`protobuf wire type ${wireType} is not expected here`);
  }
  return undefined;
}
