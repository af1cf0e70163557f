/**
 * CPU time a local PostgreSQL cluster has used, read from /proc: the
 * postmaster named in the data directory's postmaster.pid, its live children
 * (backends, WAL sender or receiver, startup, background workers), and the
 * children that have ended since it started (the postmaster's cutime and
 * cstime), so that a backend that exits during a round still counts.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

/** Clock ticks per second of /proc's times (USER_HZ: 100 on Linux). */
const TICKS = 100;

/** Fields of /proc/PID/stat from the 3rd (state) on; null if the process is gone. */
function statFields(pid: string): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) the cluster in `dataDir` has used so far. */
export function clusterCpuSeconds(dataDir: string): number {
  const postmaster = readFileSync(path.join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]!.trim();
  const own = statFields(postmaster);
  if (own === null) throw new Error(`the postmaster of ${dataDir} (pid ${postmaster}) is not running`);
  // utime, stime, cutime, cstime: fields 14–17, here 11–14.
  let ticks = own.slice(11, 15).reduce((sum, field) => sum + Number(field), 0);
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const fields = statFields(pid);
    if (fields?.[1] === postmaster) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / TICKS;
}
