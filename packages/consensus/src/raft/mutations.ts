// Deliberate bugs for mutation tests. A checker that never fires proves nothing: the simulator's own
// tests (sim/sim.test.ts, raft/mutations.test.ts) build cores with one of these switched on and
// require the simulator to find a failing seed. They are a separate, third constructor argument of
// RaftCore on purpose: RaftCoreOptions, which the driver builds from its settings, cannot carry
// them, and the driver constructs its core with two arguments — no flag, option or config file can
// reach them.

export interface RaftCoreMutations {
  /**
   * Breaks §5.4.2 (Raft paper, Figure 8): the leader commits the highest index a majority holds
   * even when that entry is of an earlier term.
   */
  readonly commitEarlierTermByCounting?: boolean;
  /**
   * Breaks the lease bound (thesis §6.4.1, RaftCoreOptions.leaseSafetyMarginTicks): the lease keeps
   * one tick of margin, for tick granularity, and none for clock drift.
   */
  readonly leaseIgnoresClockDrift?: boolean;
  /**
   * Breaks where the lease starts (thesis §6.4.1): the leader counts it from its clock when a
   * heartbeat's acknowledgement ARRIVED instead of from the send time the acknowledgement echoes,
   * so an acknowledgement that was held back stretches the lease by as long as it was held.
   */
  readonly leaseCountsFromAckArrival?: boolean;
}

export const NO_MUTATIONS: RaftCoreMutations = Object.freeze({});
