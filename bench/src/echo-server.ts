// A trivial gRPC service for the benchmarks' floor: one unary method that answers with the bytes it
// was sent. No protobuf (the serializers pass Buffers through), no middleware, no logging, so what
// a call costs here is what grpc-js and HTTP/2 cost on this machine; whatever a Concord call costs
// above it is Concord's own work. It runs as its own process, like a Concord service:
//
//   node bench/dist/echo-server.js [--listen 127.0.0.1:0]
//
// Once bound it prints one JSON line {"msg":"serving","address":"host:port"} on stdout. It stops on
// SIGTERM or SIGINT, and when its stdin closes, so a benchmark that dies never leaves it behind.
import { Server, ServerCredentials, type handleUnaryCall } from '@grpc/grpc-js';
import { parseArgs } from 'node:util';
import { ECHO_SERVICE } from './echo-service.js';

/** How long in-flight calls get on shutdown before the server is closed hard. */
const SHUTDOWN_GRACE_MS = 2000;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { listen: { type: 'string', default: '127.0.0.1:0' } } });
  const listen = values.listen;
  const server = new Server();
  const echo: handleUnaryCall<Buffer, Buffer> = (call, callback) => callback(null, call.request);
  server.addService(ECHO_SERVICE, { Echo: echo });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listen, ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound)));
  });
  const host = listen.slice(0, listen.lastIndexOf(':'));

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => {
      server.forceShutdown();
      process.exit(0);
    }, SHUTDOWN_GRACE_MS).unref();
    server.tryShutdown(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // The parent holds our stdin open; when the parent ends (also by SIGKILL) stdin closes and we go
  // too, at once: nobody is left to answer.
  const orphaned = (): void => {
    server.forceShutdown();
    process.exit(0);
  };
  process.stdin.on('end', orphaned).on('close', orphaned).on('error', orphaned).resume();

  process.stdout.write(`${JSON.stringify({ msg: 'serving', address: `${host}:${port}` })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`echo-server: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
