/**
 * npm run bench: the service against the physical limits of this machine, in
 * one run, alternating A/B rounds so drift cancels. See docs/performance.md.
 *
 *   BENCH_SECONDS   seconds per round (default 5)
 *   BENCH_ROUNDS    A/B rounds per comparison (default 3)
 *   BENCH_DATABASE_URL  use this (empty, migrated here) database instead of an embedded PostgreSQL
 *   BENCH_OUT       JSON results file (default bench/results/latest.json)
 *   BENCH_SMOKE=1   tiny sizes, for the test suite
 *   BENCH_ONLY=reads  only (10), the read replica's figures
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { ReferralCodeService, ValidateCodeRequestSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { fmt, median, seedBenchProgram, spawnLines, startBenchService, stop, waitForLine } from "./harness.ts";
import { batchPgbenchScript, conversionPgbenchScript } from "./pgbench-scripts.ts";
import { buildGrpcLoad, conversionFrames, grpcLoadCallsPerSecond, grpcLoadLatency } from "./grpc-load.ts";
import { grpcFrame, h2loadCallsPerSecond } from "./h2load.ts";
import { closedLoop, unaryCaller } from "./load.ts";
import { statsFoldOnOff } from "./stats-fold.ts";
import { readReplicaOnOff } from "./read-replica.ts";
import { commitToConsumerLatency, eventLogAdmin, eventsOnOff, eventsProgram, listEventsCatchUp, percentile } from "./events.ts";

const run = promisify(execFile);
const smoke = process.env.BENCH_SMOKE === "1";
const seconds = Number(process.env.BENCH_SECONDS ?? (smoke ? 1 : 5));
const rounds = Number(process.env.BENCH_ROUNDS ?? (smoke ? 1 : 3));
const out = process.env.BENCH_OUT ?? path.resolve("bench/results/latest.json");
const only = process.env.BENCH_ONLY;
if (only !== undefined && only !== "reads") throw new Error(`BENCH_ONLY=${only}: the one section that runs alone is "reads"`);

type Latency = Awaited<ReturnType<typeof grpcLoadLatency>>;

/** The round with the median p99, whole (its p50 and max with it). */
const medianLatency = (rounds: Latency[]): Latency => [...rounds].sort((a, b) => a.p99 - b.p99)[Math.floor(rounds.length / 2)]!;

/**
 * Transactions per second of pgbench running `script` on `databaseUrl` (prepared, as the
 * service prepares its statements) over `clients` connections for a round,
 * with `variables` set. pgbench fails the run if the script errors.
 */
async function pgbenchTps(pgbench: string, databaseUrl: string, script: string, clients: number, variables: Record<string, string | number>) {
  const { stdout } = await run(pgbench, [
    "-n", "-M", "prepared", "-c", String(clients), "-j", "1", "-T", String(seconds),
    ...Object.entries(variables).flatMap(([name, value]) => ["-D", `${name}=${value}`]),
    "-f", script, databaseUrl,
  ]);
  return Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? Number.NaN);
}

/** (1)–(9), on one database and one service; their figures go into `results`. */
async function measureSections(grpcLoad: string, results: Record<string, unknown>) {
  // The database, the service (its own process) and the bare grpc-js echo server.
  // bench/grpc-load.c drives (2) and (4): a distinct request per call, evenly
  // spaced calls, at a fraction of a Node client's CPU per call.
  const service = await startBenchService(process.env.BENCH_DATABASE_URL ?? "");
  const { databaseUrl, serviceUrl, grpcUrl, address } = service;
  const echo = spawnLines(process.execPath, ["bench/echo-server.ts"]);
  const echoPort = Number(await waitForLine(echo.lines, (l) => /^\d+$/.test(l)));
  const eventLog = await eventLogAdmin(databaseUrl);

  try {
    // Seed: a program and codes.
    const codeCount = smoke ? 10 : 1000;
    const { client, programKey, programId, codes: benchCodes } = await seedBenchProgram(serviceUrl, codeCount, databaseUrl);
    const code = benchCodes[0]!;

    // (1) ValidateCode over gRPC vs the bare grpc-js echo, h2load, alternating.
    const validateFrame = grpcFrame(toBinary(ValidateCodeRequestSchema, create(ValidateCodeRequestSchema, { code })));
    const body = path.join(tmpdir(), `validate-${process.pid}.bin`);
    writeFileSync(body, validateFrame);
    const load = { seconds, connections: smoke ? 2 : 8, streams: smoke ? 4 : 16 };
    const echoRates: number[] = [];
    const validateRates: number[] = [];
    const connectPortRates: number[] = [];
    const path_ = "/referral.v1.ReferralCodeService/ValidateCode";
    for (let r = 0; r < rounds; r++) {
      echoRates.push(await h2loadCallsPerSecond(`http://127.0.0.1:${echoPort}${path_}`, body, load));
      validateRates.push(await h2loadCallsPerSecond(`${grpcUrl}${path_}`, body, load));
      connectPortRates.push(await h2loadCallsPerSecond(`${serviceUrl}${path_}`, body, load));
    }
    results.validateCode = {
      callsPerSecond: median(validateRates),
      echoCallsPerSecond: median(echoRates),
      ratio: median(validateRates) / median(echoRates),
      connectPortCallsPerSecond: median(connectPortRates),
      rounds: { validateRates, echoRates, connectPortRates },
    };

    // (4) ValidateCode latency at a fixed open-loop rate, against the bare
    // echo at the same rate (rounds alternate), measured before the write
    // phases: BatchCreateCodes inserts hundreds of thousands of codes in
    // seconds, and the autovacuum and checkpoint that follow them on the same
    // two cores made this p99 73 ms when it ran after them (24-35 ms alone).
    const rate = smoke ? 100 : 2000;
    // Up to 1,024 calls in flight (half a second at 2,000/s) before a round
    // counts as saturated.
    const latencyLoad = { seconds, rate, connections: 8, streams: 128 };
    const echoLatencies: Latency[] = [];
    const latencies: Latency[] = [];
    for (let r = 0; r < rounds; r++) {
      echoLatencies.push(await grpcLoadLatency(grpcLoad, `127.0.0.1:${echoPort}`, path_, [validateFrame], latencyLoad));
      latencies.push(await grpcLoadLatency(grpcLoad, address, path_, [validateFrame], latencyLoad));
    }
    rmSync(body, { force: true });
    const failedValidations = await service.failedCalls("ValidateCode");
    if (failedValidations > 0) throw new Error(`${failedValidations} ValidateCode calls failed (grpc-status other than OK): the figures would not count`);
    const latency = medianLatency(latencies);
    const echoLatency = medianLatency(echoLatencies);
    results.validateLatency = { rate, ...latency, echo: echoLatency, rounds: { latencies, echoLatencies } };

    // (2) TrackReferral (distinct users and transactions) vs pgbench on the same SQL.
    const pgbench = ["/usr/lib/postgresql/15/bin/pgbench", "/usr/bin/pgbench"].find((p) => existsSync(p));
    const pgbenchScript = path.join(tmpdir(), `track-referral-${process.pid}.pgbench.sql`);
    writeFileSync(pgbenchScript, await conversionPgbenchScript());
    const trackRates: number[] = [];
    const pgbenchRates: number[] = [];
    // Distinct referred users and transaction ids, spread over the codes. The
    // C load generator sends each once (a Node client cost ~200 µs of CPU per
    // call, a tenth of the service's own, on the same two cores; pgbench is C).
    const trackConcurrency = { connections: smoke ? 1 : 4, streams: smoke ? 4 : 8 };
    for (let r = 0; r < rounds; r++) {
      const frames = conversionFrames(benchCodes, `bench-${r}`, seconds);
      trackRates.push(await grpcLoadCallsPerSecond(grpcLoad, address, "/referral.v1.ReferralCodeService/TrackReferral", frames, { seconds, ...trackConcurrency }));
      if (pgbench) {
        pgbenchRates.push(await pgbenchTps(pgbench, databaseUrl, pgbenchScript, smoke ? 2 : 10, { codes: codeCount }));
      }
    }
    rmSync(pgbenchScript, { force: true });
    results.trackReferral = {
      callsPerSecond: median(trackRates),
      pgbenchPerSecond: median(pgbenchRates),
      ratio: median(trackRates) / median(pgbenchRates),
      rounds: { trackRates, pgbenchRates },
    };

    // (3) BatchCreateCodes throughput vs pgbench running the same statement
    // for the same batches, at the same concurrency (rounds alternate; both
    // insert into the same growing table).
    const batch = unaryCaller(address, ReferralCodeService.method.batchCreateCodes);
    const batchSize = smoke ? 50 : 1000;
    const batchConcurrency = 4;
    const batchScript = path.join(tmpdir(), `batch-create-codes-${process.pid}.pgbench.sql`);
    writeFileSync(batchScript, await batchPgbenchScript(batchSize));
    let batchN = 0;
    const batchRates: number[] = [];
    const batchPgbenchRates: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const perSecond = await closedLoop(seconds, batchConcurrency, () =>
        batch.call({ programKey, userIds: Array.from({ length: batchSize }, (_, i) => `batch-${batchN}-${i}`) }).then(() => void batchN++),
      );
      batchRates.push(perSecond * batchSize);
      if (pgbench) batchPgbenchRates.push((await pgbenchTps(pgbench, databaseUrl, batchScript, batchConcurrency, { program_id: programId })) * batchSize);
    }
    batch.close();
    rmSync(batchScript, { force: true });
    results.batchCreateCodes = {
      codesPerSecond: median(batchRates),
      pgbenchCodesPerSecond: median(batchPgbenchRates),
      ratio: median(batchRates) / median(batchPgbenchRates),
      rounds: { batchRates, batchPgbenchRates },
    };

    // (5) TrackReferral with the event trigger of referral_trackings enabled
    // and disabled (ALTER TABLE … DISABLE TRIGGER between rounds; always
    // enabled again), as (2) runs it, in rounds alternating which goes first.
    const trackEvents = await eventsOnOff(eventLog, "referral_trackings", rounds, (events, r) =>
      grpcLoadCallsPerSecond(grpcLoad, address, "/referral.v1.ReferralCodeService/TrackReferral", conversionFrames(benchCodes, `events-${events ? "on" : "off"}-${r}`, seconds), {
        seconds,
        ...trackConcurrency,
      }),
    );
    results.trackReferralEvents = { unit: "calls", ...trackEvents };

    // (9) TrackReferral with the statistics fold on and off (a service per
    // round, on a database of its own), and the fold's staleness under it.
    const trackFold = await statsFoldOnOff(databaseUrl, rounds, codeCount, (foldAddress, codes, fold, r) =>
      grpcLoadCallsPerSecond(grpcLoad, foldAddress, "/referral.v1.ReferralCodeService/TrackReferral", conversionFrames(codes, `fold-${fold ? "on" : "off"}-${r}`, seconds), {
        seconds,
        ...trackConcurrency,
      }),
    );
    results.trackReferralStatsFold = { unit: "calls", ...trackFold };

    // (7) Commit → consumer latency: 10 StreamEvents consumers of a program of
    // its own (a new one each round) while TrackReferral converts through it at
    // a steady rate; each round first runs the same load with no consumer
    // (through the seeded codes). Runs before (6), whose
    // inserts autovacuum follows (see (4)).
    const track = unaryCaller(address, ReferralCodeService.method.trackReferral);
    const eventRate = smoke ? 50 : 500;
    const consumerCount = 10;
    const newProgram = async (r: number) => {
      const eventsProgramKey = `${programKey}-events-${r}`;
      return { programKey: eventsProgramKey, codes: await eventsProgram(client, eventsProgramKey, smoke ? 10 : 1000) };
    };
    const streamed = await commitToConsumerLatency({ grpcUrl, track, newProgram, baselineCodes: benchCodes, consumers: consumerCount, rate: eventRate, seconds, rounds });
    track.close();
    const allLatencies = streamed.latencies.flat().sort((a, b) => a - b);
    const callFigures = (latencies: number[]) => {
      const sorted = latencies.sort((a, b) => a - b);
      return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
    };
    results.eventLatency = {
      rate: eventRate,
      consumers: consumerCount,
      p50: percentile(allLatencies, 0.5),
      p99: percentile(allLatencies, 0.99),
      max: allLatencies.at(-1) ?? Number.NaN,
      min: allLatencies[0] ?? Number.NaN,
      expected: streamed.expected,
      received: streamed.received,
      trackReferralCall: callFigures(streamed.calls.withConsumers),
      trackReferralCallWithoutConsumers: callFigures(streamed.calls.without),
      machineBusy: { withConsumers: median(streamed.busy.withConsumers), without: median(streamed.busy.without), consumerProcess: median(streamed.busy.consumerProcess) },
      rounds: { latencies: streamed.latencies.map((round) => ({ ...callFigures(round), received: round.length })), busy: streamed.busy },
    };

    // (6) BatchCreateCodes with the event trigger of referral_codes enabled
    // and disabled, as (3) runs it, in rounds alternating which goes first.
    const eventBatch = unaryCaller(address, ReferralCodeService.method.batchCreateCodes);
    let eventBatchN = 0;
    const batchEvents = await eventsOnOff(eventLog, "referral_codes", rounds, async (events) =>
      batchSize *
      (await closedLoop(seconds, batchConcurrency, () =>
        eventBatch
          .call({ programKey, userIds: Array.from({ length: batchSize }, (_, i) => `events-${events ? "on" : "off"}-${eventBatchN}-${i}`) })
          .then(() => void eventBatchN++),
      )),
    );
    eventBatch.close();
    results.batchCreateCodesEvents = { unit: "codes", ...batchEvents };

    // (8) ListEvents catch-up: page_size 1000 from an empty cursor through
    // the first 50,000 events of the log (the phases above wrote them; a
    // short log is topped up with batches of codes).
    const catchUpEvents = smoke ? 500 : 50_000;
    const logSize = Number((await eventLog.client.query<{ n: string }>("SELECT count(*)::text AS n FROM referral_events")).rows[0]!.n);
    if (logSize < catchUpEvents) {
      const topUp = unaryCaller(address, ReferralCodeService.method.batchCreateCodes);
      for (let n = logSize; n < catchUpEvents; n += 1000) await topUp.call({ programKey, userIds: Array.from({ length: 1000 }, (_, i) => `events-log-${n}-${i}`) });
      topUp.close();
    }
    const { rows: mix } = await eventLog.client.query<{ type: string; n: string }>(
      "SELECT type, count(*)::text AS n FROM (SELECT type FROM referral_events ORDER BY xid, id LIMIT $1) s GROUP BY type ORDER BY type",
      [catchUpEvents],
    );
    const list = unaryCaller(address, ReferralCodeService.method.listEvents, 1);
    const catchUps: Awaited<ReturnType<typeof listEventsCatchUp>>[] = [];
    for (let r = 0; r < rounds; r++) catchUps.push(await listEventsCatchUp(list, catchUpEvents, 1000));
    list.close();
    const catchUp = [...catchUps].sort((a, b) => a.eventsPerSecond - b.eventsPerSecond)[Math.floor(catchUps.length / 2)]!;
    const pageMs = [...catchUp.pageMs].sort((a, b) => a - b);
    results.listEventsCatchUp = {
      eventsPerSecond: catchUp.eventsPerSecond,
      events: catchUp.events,
      pages: catchUp.pages,
      pageMsP50: percentile(pageMs, 0.5),
      pageMsMax: pageMs.at(-1),
      clientDecodeMsPerPage: catchUp.decodeMs,
      logEvents: Math.max(logSize, catchUpEvents),
      types: Object.fromEntries(mix.map(({ type, n }) => [type, Number(n)])),
      rounds: catchUps.map(({ eventsPerSecond, events, pages }) => ({ eventsPerSecond, events, pages })),
    };

    const v = results.validateCode as { callsPerSecond: number; echoCallsPerSecond: number; ratio: number; connectPortCallsPerSecond: number };
    const tr = results.trackReferral as { callsPerSecond: number; pgbenchPerSecond: number; ratio: number };
    console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model}, node ${process.version}; ${rounds} A/B rounds of ${seconds}s (medians)`);
    console.log(`(1) ValidateCode  ${fmt(v.callsPerSecond)} calls/s   bare grpc-js echo ${fmt(v.echoCallsPerSecond)} calls/s   ratio ${fmt(v.ratio)} (target >= 0.5); Connect port: ${fmt(v.connectPortCallsPerSecond)} calls/s`);
    console.log(`(2) TrackReferral ${fmt(tr.callsPerSecond)} calls/s   pgbench same SQL ${fmt(tr.pgbenchPerSecond)} tx/s   ratio ${fmt(tr.ratio)} (target >= 0.5)`);
    const b = results.batchCreateCodes as { codesPerSecond: number; pgbenchCodesPerSecond: number; ratio: number };
    console.log(`(3) BatchCreateCodes ${fmt(b.codesPerSecond)} codes/s (target >= 50,000)   pgbench same SQL ${fmt(b.pgbenchCodesPerSecond)} codes/s   ratio ${fmt(b.ratio)}`);
    const ms = (n: number) => (n === Infinity ? "saturated" : `${fmt(n)} ms`);
    console.log(`(4) ValidateCode at ${rate}/s open loop: p50 ${ms(latency.p50)}, p99 ${ms(latency.p99)}, max ${ms(latency.max)} (target p99 <= 10 ms); bare grpc-js echo at ${rate}/s: p50 ${ms(echoLatency.p50)}, p99 ${ms(echoLatency.p99)}, max ${ms(echoLatency.max)}`);
    const onOff = (label: string, figures: typeof trackEvents, unit: string, target: number) =>
      console.log(
        `${label}, events on ${fmt(figures.perSecond)} ${unit}/s   events off (trigger disabled) ${fmt(figures.withoutEventsPerSecond)} ${unit}/s   ` +
          `ratio ${fmt(figures.ratio)} (target >= ${target}); rounds' own ratios ${figures.rounds.pairRatios.map((ratio) => fmt(ratio)).join(" / ")}`,
      );
    onOff("(5) TrackReferral", trackEvents, "calls", 0.85);
    onOff("(6) BatchCreateCodes", batchEvents, "codes", 0.8);
    const el = results.eventLatency as {
      p50: number; p99: number; max: number; received: number; expected: number;
      trackReferralCall: { p50: number; p99: number }; trackReferralCallWithoutConsumers: { p50: number; p99: number };
      machineBusy: { withConsumers: number; without: number; consumerProcess: number };
    };
    const percent = (share: number) => `${Math.round(share * 100)} %`;
    console.log(
      `(7) Commit -> ${consumerCount} StreamEvents consumers, TrackReferral at ${eventRate}/s: p50 ${ms(el.p50)}, p99 ${ms(el.p99)}, max ${ms(el.max)} (target p99 <= 250 ms); ` +
        `${fmt(el.received)} of ${fmt(el.expected)} events received; the TrackReferral calls themselves: p50 ${ms(el.trackReferralCall.p50)}, p99 ${ms(el.trackReferralCall.p99)}, ` +
        `machine ${percent(el.machineBusy.withConsumers)} busy (consumers' process ${percent(el.machineBusy.consumerProcess)}); ` +
        `with no consumer: p50 ${ms(el.trackReferralCallWithoutConsumers.p50)}, p99 ${ms(el.trackReferralCallWithoutConsumers.p99)}, machine ${percent(el.machineBusy.without)} busy`,
    );
    const lc = results.listEventsCatchUp as { eventsPerSecond: number; events: number; pages: number; pageMsP50: number; clientDecodeMsPerPage: number };
    console.log(
      `(8) ListEvents catch-up, page_size 1000 from an empty cursor: ${fmt(lc.eventsPerSecond)} events/s over ${fmt(lc.events)} events (target >= 20,000/s); ` +
        `${fmt(lc.pageMsP50)} ms per page (median); decoding a page in the client ${fmt(lc.clientDecodeMsPerPage)} ms, not counted`,
    );
    const st = trackFold.stalenessSeconds;
    console.log(
      `(9) TrackReferral, statistics fold on ${fmt(trackFold.perSecond)} calls/s   off (STATS_FOLD_INTERVAL_MS=0) ${fmt(trackFold.withoutFoldPerSecond)} calls/s   ` +
        `ratio ${fmt(trackFold.ratio)} (target >= 0.9); rounds' own ratios ${trackFold.rounds.on.map((v, r) => fmt(v / trackFold.rounds.off[r]!)).join(" / ")}; ` +
        `staleness (now - as_of) under it: p50 ${fmt(st.p50)} s, p99 ${fmt(st.p99)} s, max ${fmt(st.max)} s over ${st.samples} samples (target <= 5 s)`,
    );
  } finally {
    await eventLog.restore().catch((error: unknown) => console.error("could not enable the event triggers again:", error));
    await stop(echo.child);
    await service.close();
  }
}

async function main() {
  const grpcLoad = await buildGrpcLoad();
  if (grpcLoad === null) throw new Error("bench/grpc-load.c could not be built: it needs cc and libnghttp2-dev (apt-get install libnghttp2-dev)");
  const results: Record<string, unknown> = { machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version }, seconds, rounds };
  if (only === undefined) await measureSections(grpcLoad, results);
  else console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model}, node ${process.version}; ${rounds} A/B rounds of ${seconds}s (medians)`);

  // (10) On a PostgreSQL of its own, after (1)–(9) have stopped theirs.
  const loadBefore = loadavg();
  const reads = await readReplicaOnOff(grpcLoad, { rounds, seconds, smoke });
  results.readReplica = { ...reads, loadAverage: { before: loadBefore, after: loadavg() } };
  printReadReplica(reads, loadBefore);

  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`results written to ${out}`);
}

function printReadReplica(reads: Awaited<ReturnType<typeof readReplicaOnOff>>, loadBefore: number[]) {
  const { listAlone: a, writesUnderList: w } = reads;
  const ms = (n: number) => (n === Infinity ? "saturated" : `${fmt(n)} ms`);
  const load = `load average ${loadBefore.map((n) => n.toFixed(2)).join(" ")} at the start`;
  console.log(
    `(10) List load (ListCodes + ListReferrals of one program, pages of ${reads.pageSize}), primary only ${fmt(a.primary.callsPerSecond)} calls/s, ` +
      `primary CPU ${fmt(a.primary.primaryCpuMsPer1000)} ms per 1,000 calls; with DATABASE_READ_URL on a hot standby ${fmt(a.replica.callsPerSecond)} calls/s ` +
      `(ratio ${fmt(a.ratios.callsPerSecond.ratio)}; rounds' own ${a.ratios.callsPerSecond.rounds.map((ratio) => fmt(ratio)).join(" / ")}), ` +
      `primary CPU ${fmt(a.replica.primaryCpuMsPer1000)} ms per 1,000 (ratio ${fmt(a.ratios.primaryCpuMsPer1000.ratio)}), standby CPU ${fmt(a.replica.standbyCpuMsPer1000)} ms per 1,000; ` +
      `less the primary's CPU with no call (${fmt(a.idle.primaryCores)} cores): ${fmt(a.primary.primaryCpuMsPer1000AboveIdle)} vs ${fmt(a.replica.primaryCpuMsPer1000AboveIdle)} ms per 1,000; ${load}`,
  );
  console.log(
    `(10) TrackReferral under the List load at ${fmt(w.listRate)}/s: primary only ${fmt(w.primary.trackCallsPerSecond)} calls/s, primary ${fmt(w.primary.primaryCores)} cores busy, ` +
      `List p99 ${ms(w.primary.listP99)}; with the standby ${fmt(w.replica.trackCallsPerSecond)} calls/s (ratio ${fmt(w.ratios.trackCallsPerSecond.ratio)}; ` +
      `rounds' own ${w.ratios.trackCallsPerSecond.rounds.map((ratio) => fmt(ratio)).join(" / ")}), ` +
      `primary ${fmt(w.replica.primaryCores)} cores busy (ratio ${fmt(w.ratios.primaryCores.ratio)}), standby ${fmt(w.replica.standbyCores)} cores, List p99 ${ms(w.replica.listP99)}`,
  );
}

await main();
