export type {
  EngineName,
  StateMachine,
  LeaderHint,
  ProposeOutcome,
  ReadBarrierOutcome,
  MemberRole,
  MemberInfo,
  MembershipChange,
  MembershipOutcome,
  TransferOutcome,
  ConsensusStatus,
  ConsensusGroup,
} from './types.js';
export { describeMembershipChange, sortMembers } from './membership.js';
export { SingleGroup, DEFAULT_SNAPSHOT_EVERY } from './single/single-group.js';
export type { SingleGroupOptions } from './single/single-group.js';
export { RaftGroup, RAFT_DEFAULTS } from './raft-driver/raft-group.js';
export { RAFT_TIMING_OPTION_SPECS } from './raft-driver/timing-options.js';
export { RAFT_LOG_OPTION_SPECS, raftLogOptions } from './raft-driver/log-options.js';
export type { RaftGroupOptions } from './raft-driver/raft-group.js';
export type { RaftTransport, RaftInbound, ReceivedSnapshot } from './raft-driver/transport.js';
export {
  GrpcRaftTransport,
  DEFAULT_SNAPSHOT_CHUNK_BYTES,
  DEFAULT_MAX_QUEUED_MESSAGES,
  DEFAULT_RECONNECT_BACKOFF_MS,
  DEFAULT_SNAPSHOT_TIMEOUT_MS,
} from './raft-driver/grpc-transport.js';
export type { GrpcRaftTransportOptions } from './raft-driver/grpc-transport.js';
export { ConsensusPeerService, CONSENSUS_SERVICE_NAME, DEFAULT_MAX_SNAPSHOT_BYTES } from './raft-driver/peer-service.js';
export type { ConsensusPeerServiceOptions, ProbeSubject } from './raft-driver/peer-service.js';
export {
  BootstrapGuard,
  BootstrapRefusedError,
  BOOTSTRAP_GUARD_OPTION_SPECS,
  DEFAULT_BOOTSTRAP_CHECK_MS,
  decideBootstrap,
  probePeers,
  raftDataIsEmpty,
  refusalMessage,
} from './raft-driver/bootstrap-guard.js';
export type { BootstrapCheck, BootstrapDecision, BootstrapGuardOptions, BootstrapInput, PeerProbe, PeerGroupState } from './raft-driver/bootstrap-guard.js';
export { HeardFromLedger, HEARD_FROM_FILE } from './raft-driver/heard-from-ledger.js';
export { MemoryRaftNetwork } from './raft-driver/memory-transport.js';
export { RaftStorage } from './raft-driver/raft-storage.js';
export type { RaftStorageOptions, RecoveredRaftState } from './raft-driver/raft-storage.js';
export { seededRandom, cryptoSeededRandom } from './raft-driver/random.js';
