// The echo service of the benchmarks' floor, shared by the server script and the client.
import type { ServiceDefinition } from '@grpc/grpc-js';

/** Full path of the echo method. */
export const ECHO_METHOD_PATH = '/concord.bench.Echo/Echo';

/** Buffers are sent as they are: no schema, no protobuf. */
export const passthrough = (bytes: Buffer): Buffer => bytes;

/** A hand-made service definition (no .proto): one unary method, Buffers in and out. */
export const ECHO_SERVICE: ServiceDefinition = {
  Echo: {
    path: ECHO_METHOD_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: passthrough,
    requestDeserialize: passthrough,
    responseSerialize: passthrough,
    responseDeserialize: passthrough,
  },
};
