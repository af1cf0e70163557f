/**
 * npm run bench, (9): what the statistics fold costs conversions, and how far
 * behind it runs. On a database of its own on the bench's cluster (the bench's
 * service folds its own database: a folding replica on the same database would
 * fold the "off" rounds' events too), each round starts a fresh service with
 * STATS_FOLD_INTERVAL_MS at its default (fold on) or 0 (off), runs
 * TrackReferral as (2) does, and stops it; rounds alternate which goes first.
 * During every round a client samples GetProgramStats every 200 ms (in both,
 * so both carry the same extra load); in the "on" rounds, now − as_of of each
 * sample is the fold's staleness (counted once the new service has folded the
 * "off" round's backlog).
 */
import { randomBytes } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { ReferralCodeService } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { percentile } from "./events.ts";
import { median, seedBenchProgram, startBenchService } from "./harness.ts";

export async function statsFoldOnOff(
  databaseUrl: string,
  rounds: number,
  codeCount: number,
  measure: (address: string, codes: string[], fold: boolean, round: number) => Promise<number>,
) {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  const name = `bench_stats_${randomBytes(4).toString("hex")}`;
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  try {
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
    // Fold on: the default interval (250 ms), as a deployment runs it.
    const start = (fold: boolean) => startBenchService(url.toString(), `referral-bench-fold-${fold ? "on" : "off"}`, fold ? {} : { STATS_FOLD_INTERVAL_MS: "0" });
    let seed: { programKey: string; codes: string[] } | undefined;
    const on: number[] = [];
    const off: number[] = [];
    const staleness: number[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const fold of r % 2 === 0 ? [true, false] : [false, true]) {
        const service = await start(fold);
        try {
          seed ??= await seedBenchProgram(service.serviceUrl, codeCount, url.toString());
          const { programKey, codes } = seed;
          const client = createClient(ReferralCodeService, createGrpcTransport({ baseUrl: service.grpcUrl }));
          const stalenessNow = async () => (Date.now() - timestampDate((await client.getProgramStats({ programKey })).stats!.asOf!).getTime()) / 1000;
          // A fresh "on" service first folds the previous "off" round's events: not counted.
          for (let wait = 0; fold && wait < 150 && (await stalenessNow()) > 1; wait++) await new Promise((resolve) => setTimeout(resolve, 200));
          let measuring = true;
          const samples: number[] = [];
          const sampler = (async () => {
            while (measuring) {
              samples.push(await stalenessNow());
              await new Promise((resolve) => setTimeout(resolve, 200));
            }
          })();
          try {
            (fold ? on : off).push(await measure(service.address, codes, fold, r));
          } finally {
            measuring = false;
            await sampler;
          }
          if (fold) staleness.push(...samples);
        } finally {
          await service.close();
        }
      }
    }
    staleness.sort((a, b) => a - b);
    return {
      perSecond: median(on),
      withoutFoldPerSecond: median(off),
      ratio: median(on) / median(off),
      medianPairRatio: median(on.map((value, r) => value / off[r]!)),
      stalenessSeconds: { p50: percentile(staleness, 0.5), p99: percentile(staleness, 0.99), max: staleness.at(-1) ?? Number.NaN, samples: staleness.length },
      rounds: { on, off },
    };
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(name)} WITH (FORCE)`).catch(() => {});
    await admin.end();
  }
}
