// The coordinator's own ShardRouter, reading its ring straight from the directory: no network hop,
// and no GetRing to itself.

import type { ChannelCredentials } from '@grpc/grpc-js';
import { ShardRouter } from '@concord/client';
import type { ShardDirectory } from './directory.js';

export interface DirectoryRouter {
  router: ShardRouter;
  /**
   * Reloads the router's table when the directory changed since the router last read it (a new
   * epoch, a replaced replica address). Shards answer WRONG_SHARD to a stale epoch, which also
   * reloads it, but nothing tells the router that a replica's address changed at the same epoch.
   */
  refreshIfChanged(): Promise<void>;
}

/** `credentials`: of the channels to shard replicas (mutual TLS with --tls-*); default plaintext. */
export function createDirectoryRouter(directory: ShardDirectory, credentials?: ChannelCredentials): DirectoryRouter {
  /** Log index of the directory change the router's table was built from. */
  let routedChangedAt: number | undefined;
  const router = new ShardRouter({
    ...(credentials !== undefined ? { credentials } : {}),
    ringSource: async () => {
      const state = directory.require();
      routedChangedAt = state.changedAt;
      return directory.ringResponse();
    },
  });
  return {
    router,
    async refreshIfChanged() {
      const changedAt = directory.current()?.changedAt;
      if (routedChangedAt !== undefined && changedAt !== undefined && changedAt !== routedChangedAt) await router.refresh();
    },
  };
}
