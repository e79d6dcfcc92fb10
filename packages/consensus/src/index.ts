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
  ConsensusStatus,
  ConsensusGroup,
} from './types.js';
export { SingleGroup, DEFAULT_SNAPSHOT_EVERY } from './single/single-group.js';
export type { SingleGroupOptions } from './single/single-group.js';
