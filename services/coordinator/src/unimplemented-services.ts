// concord.v1.Txn and concord.v1.MapReduce are registered before they exist, so `grpcurl list`
// shows the whole public API and a client gets a clear UNIMPLEMENTED naming what is missing,
// rather than grpc-js's bare "method not found".

import { status } from '@grpc/grpc-js';
import type { MapReduceServer } from '@concord/proto/mapreduce';
import type { TxnServer } from '@concord/proto/txn';
import { ServiceError, serverStream, unary } from '@concord/runtime';

export const TXN_UNIMPLEMENTED_MESSAGE =
  'transactions are not built yet: Txn.Commit (multi-key transactions over two-phase commit) is not available in this coordinator; ' +
  'for one key, use KV.Put or KV.Delete with expected_version';

export const MAPREDUCE_UNIMPLEMENTED_MESSAGE = 'MapReduce jobs are not built yet: the MapReduce service is not available in this coordinator';

function notBuilt(message: string): never {
  throw new ServiceError(status.UNIMPLEMENTED, message);
}

export function createTxnService(): TxnServer {
  return {
    commit: unary(async () => notBuilt(TXN_UNIMPLEMENTED_MESSAGE)),
  };
}

export function createMapReduceService(): MapReduceServer {
  const method = (name: string): string => `${MAPREDUCE_UNIMPLEMENTED_MESSAGE} (MapReduce.${name})`;
  return {
    submit: unary(async () => notBuilt(method('Submit'))),
    get: unary(async () => notBuilt(method('Get'))),
    watch: serverStream(async function* () {
      notBuilt(method('Watch'));
    }),
    list: unary(async () => notBuilt(method('List'))),
    cancel: unary(async () => notBuilt(method('Cancel'))),
  };
}
