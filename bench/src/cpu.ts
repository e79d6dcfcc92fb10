// CPU time of the processes taking part in a run, sampled at the start and end of a measured
// window: on a machine with few cores, the client and every server share them, and the CPU each
// one burns per request says where the time goes.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';

/**
 * Linux reports a process's CPU time in /proc/<pid>/stat in clock ticks of USER_HZ, which the
 * kernel fixes at 100 per second for user space on every architecture Node runs on.
 */
const USER_HZ = 100;

/** CPU time (user + system, all threads) of a process in microseconds; undefined if unavailable. */
function processCpuUs(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces: fields count from after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return ((utime + stime) * 1_000_000) / USER_HZ;
}

export interface CpuSample {
  atMs: number;
  /** CPU microseconds so far, by role. */
  byRole: Map<string, number>;
  /** Busy CPU microseconds of the whole machine so far (all processes, all cores). */
  machineUs: number;
}

/** What each role burned between two samples. */
export interface CpuUse {
  /** CPU seconds per second of wall time: 1.0 is one core fully busy. */
  cores: number;
  /** CPU microseconds per successful request. */
  us_per_op: number;
}

/**
 * Samples the CPU time of this process (role "bench_client") and of the given processes, summed
 * by role (e.g. three shard processes under "shards"). Outside Linux only this process is known.
 */
export class CpuSampler {
  constructor(private readonly processes: ReadonlyArray<{ role: string; pid: number | undefined }>) {}

  sample(): CpuSample {
    const byRole = new Map<string, number>();
    const self = process.cpuUsage();
    byRole.set('bench_client', self.user + self.system);
    if (process.platform === 'linux') {
      for (const { role, pid } of this.processes) {
        const us = pid === undefined ? undefined : processCpuUs(pid);
        if (us !== undefined) byRole.set(role, (byRole.get(role) ?? 0) + us);
      }
    }
    return { atMs: performance.now(), byRole, machineUs: machineBusy().busyUs };
  }

  /**
   * Per role: cores busy and CPU per request between two samples; the sum of the roles as "all";
   * and as "other" whatever else kept the machine's cores busy meanwhile (on Linux), which is
   * CPU the run did not have.
   */
  static use(start: CpuSample, end: CpuSample, opsPerSec: number): Record<string, CpuUse> {
    const wallUs = (end.atMs - start.atMs) * 1000;
    const out: Record<string, CpuUse> = {};
    if (wallUs <= 0) return out;
    let total = 0;
    for (const [role, endUs] of end.byRole) {
      const startUs = start.byRole.get(role);
      if (startUs === undefined) continue;
      const cores = (endUs - startUs) / wallUs;
      total += cores;
      out[role] = describe(cores, opsPerSec);
    }
    out['all'] = describe(total, opsPerSec);
    if (process.platform === 'linux') {
      const other = Math.max(0, (end.machineUs - start.machineUs) / wallUs - total);
      out['other'] = describe(other, opsPerSec);
    }
    return out;
  }
}

/** Busy and total CPU microseconds of the whole machine since boot, from the per-core counters. */
function machineBusy(): { busyUs: number; allUs: number } {
  let busyUs = 0;
  let allUs = 0;
  for (const { times } of cpus()) {
    const sum = times.user + times.nice + times.sys + times.irq + times.idle;
    allUs += sum * 1000;
    busyUs += (sum - times.idle) * 1000;
  }
  return { busyUs, allUs };
}

function describe(cores: number, opsPerSec: number): CpuUse {
  return {
    cores: Number(cores.toFixed(2)),
    us_per_op: opsPerSec > 0 ? Math.round((cores * 1_000_000) / opsPerSec) : 0,
  };
}

/**
 * The share (0 to 1) of all cores that were busy during the next `intervalMs`, from the
 * system-wide counters: a run next to other work measures that work as much as its own.
 */
export async function machineBusyShare(intervalMs: number): Promise<number> {
  const before = machineBusy();
  await new Promise((resolve) => setTimeout(resolve, intervalMs));
  const after = machineBusy();
  const allUs = after.allUs - before.allUs;
  return allUs > 0 ? Number(((after.busyUs - before.busyUs) / allUs).toFixed(2)) : 0;
}
