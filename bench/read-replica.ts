/**
 * npm run bench, (10): what a hot standby behind DATABASE_READ_URL takes off
 * the primary. On a PostgreSQL of its own (so that its processes' CPU is this
 * section's alone, and the standby copies only this section's database), with
 * a streaming hot standby of it (bench/standby.ts), two services run side by
 * side: A on the primary alone, B with DATABASE_READ_URL on the standby. A
 * dashboard's List load (ListCodes and ListReferrals of one program, pages
 * of 50, the first pages over and over) goes to one of them at a time, in
 * rounds alternating which goes first:
 *
 * (a) the List load alone, closed loop: calls/s, and the CPU the primary's
 *     and the standby's processes used per 1,000 List calls (their work with
 *     no call at all, measured in the same rounds, is in `idle`);
 * (b) the List load at a fixed rate (half of A's (a) rate), open loop, while
 *     TrackReferral runs as (2) does: the writes' calls/s, the List calls'
 *     latency, the primary's and the standby's CPU (cores busy).
 *
 * All on one machine: the standby's CPU comes out of the same cores as the
 * primary's and the services', so (a)'s CPU per call is the figure that
 * carries to a standby on a machine of its own.
 */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { ListCodesRequestSchema, ListReferralsRequestSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { startEmbeddedPostgres } from "../src/db/embedded-postgres.ts";
import { createLogger } from "../src/platform/logger.ts";
import { clusterCpuSeconds } from "./cluster-cpu.ts";
import { conversionFrames, grpcLoadCallsPerSecond, grpcLoadLatency } from "./grpc-load.ts";
import { grpcFrame } from "./h2load.ts";
import { freePort, median, seedBenchProgram, startBenchService } from "./harness.ts";
import { startStandby } from "./standby.ts";

const LIST_CODES = "/referral.v1.ReferralCodeService/ListCodes";
const LIST_REFERRALS = "/referral.v1.ReferralCodeService/ListReferrals";
const TRACK_REFERRAL = "/referral.v1.ReferralCodeService/TrackReferral";
const PAGE_SIZE = 50;

type Side = "primary" | "replica";

/** CPU seconds the primary's and the standby's processes use while `run` runs, and its wall seconds. */
async function cpuDuring<T>(dataDirs: { primary: string; standby: string }, run: () => Promise<T>) {
  const before = { primary: clusterCpuSeconds(dataDirs.primary), standby: clusterCpuSeconds(dataDirs.standby), at: performance.now() };
  const value = await run();
  return {
    value,
    wallSeconds: (performance.now() - before.at) / 1000,
    primaryCpuSeconds: clusterCpuSeconds(dataDirs.primary) - before.primary,
    standbyCpuSeconds: clusterCpuSeconds(dataDirs.standby) - before.standby,
  };
}

/** The median of each field over `rounds`. */
function medians<T extends Record<string, number>>(rounds: T[]): T {
  return Object.fromEntries(Object.keys(rounds[0] ?? {}).map((key) => [key, median(rounds.map((round) => round[key]!))])) as T;
}

/** B/A of a field: of the medians, and of each round's pair. */
function ratio<K extends string>(rounds: Record<Side, Record<K, number>[]>, key: K) {
  const of = (side: Side) => median(rounds[side].map((round) => round[key]));
  return { ratio: of("replica") / of("primary"), rounds: rounds.replica.map((round, r) => round[key] / rounds.primary[r]![key]) };
}

/** `measure` on each side in `rounds` rounds, alternating which side goes first. */
async function alternating<T>(rounds: number, measure: (side: Side, round: number) => Promise<T>): Promise<Record<Side, T[]>> {
  const figures: Record<Side, T[]> = { primary: [], replica: [] };
  for (let r = 0; r < rounds; r++) {
    for (const side of r % 2 === 0 ? (["primary", "replica"] as const) : (["replica", "primary"] as const)) figures[side].push(await measure(side, r));
  }
  return figures;
}

export async function readReplicaOnOff(grpcLoad: string, options: { rounds: number; seconds: number; smoke: boolean }) {
  const { rounds, seconds, smoke } = options;
  const codeCount = smoke ? 10 : 2000;
  const pagesWalked = smoke ? 2 : 10;
  const dataDir = path.join(tmpdir(), `referral-bench-reads-${randomBytes(4).toString("hex")}`);
  const primary = await startEmbeddedPostgres({ dataDir, port: await freePort(), database: "bench", logger: createLogger("warn") });
  const cleanup: (() => Promise<void>)[] = [
    async () => {
      await primary.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  ];
  try {
    const onPrimary = await startBenchService(primary.connectionString, "referral-bench-reads-primary");
    cleanup.unshift(() => onPrimary.close());
    // Seeded before the standby is made: the copy starts with the rows, as a standby that has been running would.
    const { client, programKey, codes } = await seedBenchProgram(onPrimary.serviceUrl, codeCount, primary.connectionString);
    const standby = await startStandby({ url: primary.connectionString, dataDir }, await freePort());
    cleanup.unshift(() => standby.remove());
    const onReplica = await startBenchService(primary.connectionString, "referral-bench-reads-replica", { DATABASE_READ_URL: standby.url });
    cleanup.unshift(() => onReplica.close());
    const services = { primary: onPrimary, replica: onReplica };
    const dataDirs = { primary: dataDir, standby: standby.dataDir };

    // The dashboard's pages: the program's first pages of codes and of referrals, tokens as the API hands them out.
    const listCodes: Uint8Array[] = [];
    const listReferrals: Uint8Array[] = [];
    for (let pageToken = "", n = 0; n < pagesWalked; n++) {
      const request = create(ListCodesRequestSchema, { programKey, pageSize: PAGE_SIZE, pageToken });
      listCodes.push(grpcFrame(toBinary(ListCodesRequestSchema, request)));
      pageToken = (await client.listCodes(request)).nextPageToken;
      if (pageToken === "") break;
    }
    for (let pageToken = "", n = 0; n < pagesWalked; n++) {
      const request = create(ListReferralsRequestSchema, { programKey, pageSize: PAGE_SIZE, pageToken });
      listReferrals.push(grpcFrame(toBinary(ListReferralsRequestSchema, request)));
      pageToken = (await client.listReferrals(request)).nextPageToken;
      if (pageToken === "") break;
    }
    // grpc-load's closed loop sends each frame once: enough for ~8,000 calls/s.
    const repeated = (frames: Uint8Array[]) => Array.from({ length: Math.max(2000, seconds * 8000) }, (_, i) => frames[i % frames.length]!);
    const listLoad = { connections: smoke ? 1 : 2, streams: smoke ? 2 : 8 };

    // (a) The List load alone, closed loop: half the connections page through codes, half through referrals.
    // Each round first measures both clusters with no call at all: what the two idle services
    // (health probes, event feed, statistics fold) and the clusters' own background work cost.
    const idle: { primaryCores: number; standbyCores: number }[] = [];
    const alone = await alternating(rounds, async (side, r) => {
      await standby.caughtUp();
      if (idle[r] === undefined) {
        const quiet = await cpuDuring(dataDirs, () => new Promise((resolve) => setTimeout(resolve, seconds * 1000)));
        idle[r] = { primaryCores: quiet.primaryCpuSeconds / quiet.wallSeconds, standbyCores: quiet.standbyCpuSeconds / quiet.wallSeconds };
      }
      const { address } = services[side];
      const round = await cpuDuring(dataDirs, () =>
        Promise.all([
          grpcLoadCallsPerSecond(grpcLoad, address, LIST_CODES, repeated(listCodes), { seconds, ...listLoad }),
          grpcLoadCallsPerSecond(grpcLoad, address, LIST_REFERRALS, repeated(listReferrals), { seconds, ...listLoad }),
        ]),
      );
      const callsPerSecond = round.value[0] + round.value[1];
      const thousands = (callsPerSecond * seconds) / 1000;
      return {
        callsPerSecond,
        primaryCpuMsPer1000: (round.primaryCpuSeconds * 1000) / thousands,
        // Less what the primary used in this round's idle measurement, for as long.
        primaryCpuMsPer1000AboveIdle: ((round.primaryCpuSeconds - idle[r]!.primaryCores * round.wallSeconds) * 1000) / thousands,
        standbyCpuMsPer1000: (round.standbyCpuSeconds * 1000) / thousands,
        primaryCores: round.primaryCpuSeconds / round.wallSeconds,
      };
    });
    const listAlone = { primary: medians(alone.primary), replica: medians(alone.replica), idle: medians(idle) };

    // (b) TrackReferral, closed loop as (2), while the List load runs at a fixed rate, open loop.
    const listRate = Math.max(20, Math.round(listAlone.primary.callsPerSecond / 2 / 10) * 10);
    const trackLoad = { connections: smoke ? 1 : 4, streams: smoke ? 4 : 8 };
    const openList = { seconds, rate: listRate / 2, connections: listLoad.connections, streams: 64 };
    const writes = await alternating(rounds, async (side, r) => {
      await standby.caughtUp();
      const { address } = services[side];
      const round = await cpuDuring(dataDirs, () =>
        Promise.all([
          grpcLoadCallsPerSecond(grpcLoad, address, TRACK_REFERRAL, conversionFrames(codes, `reads-${side}-${r}`, seconds), { seconds, ...trackLoad }),
          grpcLoadLatency(grpcLoad, address, LIST_CODES, listCodes, openList),
          grpcLoadLatency(grpcLoad, address, LIST_REFERRALS, listReferrals, openList),
        ]),
      );
      const [trackCallsPerSecond, codesLatency, referralsLatency] = round.value;
      return {
        trackCallsPerSecond,
        // The slower of the two lists' percentiles (Infinity: a list fell behind its rate).
        listP50: Math.max(codesLatency.p50, referralsLatency.p50),
        listP99: Math.max(codesLatency.p99, referralsLatency.p99),
        listCallsPerSecond: codesLatency.achievedRate + referralsLatency.achievedRate,
        primaryCores: round.primaryCpuSeconds / round.wallSeconds,
        standbyCores: round.standbyCpuSeconds / round.wallSeconds,
      };
    });
    const writesUnderList = { listRate, primary: medians(writes.primary), replica: medians(writes.replica) };
    return {
      codes: codeCount,
      conversions: 2 * codeCount,
      pageSize: PAGE_SIZE,
      pages: { listCodes: listCodes.length, listReferrals: listReferrals.length },
      listLoad: { ...listLoad, methods: 2 },
      listAlone: {
        ...listAlone,
        ratios: { callsPerSecond: ratio(alone, "callsPerSecond"), primaryCpuMsPer1000: ratio(alone, "primaryCpuMsPer1000") },
        rounds: { ...alone, idle },
      },
      writesUnderList: {
        ...writesUnderList,
        ratios: { trackCallsPerSecond: ratio(writes, "trackCallsPerSecond"), primaryCores: ratio(writes, "primaryCores") },
        rounds: writes,
      },
    };
  } finally {
    for (const step of cleanup) await step().catch((error: unknown) => console.error("read replica section: cleanup failed:", error));
  }
}
