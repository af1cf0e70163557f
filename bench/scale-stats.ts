/**
 * The statistics part of npm run bench:scale. The load logs no events for its
 * rows and fills the rollups from them in one statement (bench/scale-load.ts);
 * the service's fold folds the rest of the log (the seed's events). Then
 * GetProgramStats and ListTopReferrers latency through the service, calls one
 * after another, as the ListReferrals walk is measured.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import type pg from "pg";
import type { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { DAY_MS } from "../src/platform/clock.ts";
import type { DayRange } from "../src/stats/repository.ts";
import { percentile } from "./events.ts";
import { fmt } from "./harness.ts";

export type FoldReport = {
  /** Events in the log once the load ended, those the fold had not folded yet, and the time until as_of passed the load's end. */
  events: number;
  unfoldedAtLoadEnd: number;
  catchUpSeconds: number;
  rollupRows: { programDays: number; referrerDays: number; referrers: number };
};

/** Waits until the service's fold has caught up (as_of past the load's end); the rollups' sizes. */
export async function waitForFold(db: pg.Client, progress: (line: string) => void): Promise<FoldReport> {
  const { rows: at } = await db.query<{ now: Date; events: string; unfolded: string }>(
    `SELECT now(), (SELECT count(*) FROM referral_events) AS events,
       (SELECT count(*) FROM referral_events e, stats_fold f WHERE (e.xid, e.id) > (f.folded_xid, f.folded_id)) AS unfolded`,
  );
  const loadEnd = at[0]!.now;
  const started = performance.now();
  let lastReport = started;
  for (;;) {
    const { rows } = await db.query<{ caught_up: boolean }>("SELECT as_of >= $1 AS caught_up FROM stats_fold", [loadEnd]);
    if (rows[0]!.caught_up) break;
    if (performance.now() - lastReport > 30_000) {
      lastReport = performance.now();
      const { rows: left } = await db.query<{ unfolded: string }>(
        "SELECT count(*) AS unfolded FROM referral_events e, stats_fold f WHERE (e.xid, e.id) > (f.folded_xid, f.folded_id)",
      );
      progress(`${fmt(Number(left[0]!.unfolded))} events left to fold`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const catchUpSeconds = (performance.now() - started) / 1000;
  const { rows: sizes } = await db.query<{ program_days: string; referrer_days: string; referrers: string }>(
    `SELECT (SELECT count(*) FROM program_stats_daily) AS program_days, (SELECT count(*) FROM referrer_stats_daily) AS referrer_days,
       (SELECT count(*) FROM referrer_stats) AS referrers`,
  );
  const unfolded = Number(at[0]!.unfolded);
  return {
    events: Number(at[0]!.events),
    unfoldedAtLoadEnd: unfolded,
    catchUpSeconds,
    rollupRows: { programDays: Number(sizes[0]!.program_days), referrerDays: Number(sizes[0]!.referrer_days), referrers: Number(sizes[0]!.referrers) },
  };
}

export type StatsLatency = { p50: number; p99: number; max: number; calls: number };
export type StatsCase = { name: string; call: () => Promise<unknown>; explain: { range: DayRange; after?: { value: bigint; referrerUserId: string } } };

/** The last 30 days as a request's range, and as the whole UTC days the service reads for it. */
function last30Days(now: Date) {
  const start = new Date(now.getTime() - 30 * DAY_MS);
  return {
    request: { startTime: timestampFromDate(start), endTime: timestampFromDate(now) },
    days: { from: new Date(Math.floor(start.getTime() / DAY_MS) * DAY_MS), to: new Date(Math.ceil(now.getTime() / DAY_MS) * DAY_MS) },
  };
}

/**
 * The statistics reads measured, on `programKey` (the largest program): for a
 * deep leaderboard page, walks `deepPage` - 1 pages by token first.
 */
export async function statsCases(
  client: Client<typeof ReferralCodeService>,
  programKey: string,
  deepPage: number,
  now: Date,
): Promise<StatsCase[]> {
  const month = last30Days(now);
  const all: DayRange = { from: null, to: null };
  let token = "";
  let after: { value: bigint; referrerUserId: string } | undefined;
  let pages = 1;
  for (; pages < deepPage; pages++) {
    const response = await client.listTopReferrers({ programKey, pageSize: 100, pageToken: token });
    const last = response.referrers.at(-1);
    if (response.nextPageToken === "" || last === undefined) break;
    token = response.nextPageToken;
    after = { value: last.conversions, referrerUserId: last.referrerUserId };
  }
  const deepToken = token;
  return [
    { name: "GetProgramStats, all time", call: () => client.getProgramStats({ programKey }), explain: { range: all } },
    { name: "GetProgramStats, last 30 days", call: () => client.getProgramStats({ programKey, ...month.request }), explain: { range: month.days } },
    { name: "ListTopReferrers, all time, page 1", call: () => client.listTopReferrers({ programKey, pageSize: 100 }), explain: { range: all } },
    {
      name: `ListTopReferrers, all time, page ${fmt(pages)}`,
      call: () => client.listTopReferrers({ programKey, pageSize: 100, pageToken: deepToken }),
      explain: { range: all, ...(after ? { after } : {}) },
    },
    {
      name: "ListTopReferrers, last 30 days, page 1",
      call: () => client.listTopReferrers({ programKey, pageSize: 100, ...month.request }),
      explain: { range: month.days },
    },
  ];
}

/** `calls` calls one after another (after 10 unmeasured), in ms. */
export async function measureLatency(call: () => Promise<unknown>, calls: number): Promise<StatsLatency> {
  for (let i = 0; i < 10; i++) await call();
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const at = performance.now();
    await call();
    times.push(performance.now() - at);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 0.5), p99: percentile(times, 0.99), max: times.at(-1)!, calls };
}
