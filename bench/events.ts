/**
 * The event log's figures in npm run bench (docs/performance.md, "Events"):
 * what the triggers of sql/0009_referral_events.sql cost a write (the same
 * load with the table's trigger enabled and disabled, in alternating rounds),
 * how long a committed change takes to reach StreamEvents consumers, and how
 * fast ListEvents pages through a long log.
 */
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fromBinary } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { Client } from "@connectrpc/connect";
import pg from "pg";
import { ListEventsResponseSchema, ReferralCodeService, TrackReferralResponseSchema } from "../src/gen/referral/v1/referral_code_service_pb.js";
import { RewardKind } from "../src/gen/referral/v1/resources_pb.js";
import { median, spawnLines, stop, waitForLine } from "./harness.ts";
import type { unaryCaller } from "./load.ts";

/** The tables whose statement-level AFTER INSERT trigger writes their created events. */
type EventTable = "referral_trackings" | "referral_codes";

const wallNow = () => performance.timeOrigin + performance.now();

/** The value below which a fraction `p` of `sorted` (ascending) lies: nearest rank. */
export const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN;

/**
 * The bench's own connection for switching event triggers and reading the
 * log's size. Every switch is undone by `restore`, which the bench calls in
 * its `finally`; `measure` re-enables the trigger itself too.
 */
export async function eventLogAdmin(databaseUrl: string) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const setTrigger = (table: EventTable, enabled: boolean) =>
    client.query(`ALTER TABLE ${table} ${enabled ? "ENABLE" : "DISABLE"} TRIGGER referral_events_created`);
  /** The last event id handed out (the identity's sequence): events written between two reads. */
  const lastEventId = async () =>
    Number((await client.query<{ last: string }>("SELECT last_value::text AS last FROM referral_events_id_seq")).rows[0]!.last);
  return {
    client,
    lastEventId,
    /**
     * `measure` with the table's event trigger enabled (`events`) or disabled,
     * and how many events it wrote: the trigger is enabled again whatever happens.
     */
    async measure<T>(table: EventTable, events: boolean, run: () => Promise<T>): Promise<{ value: T; eventsWritten: number }> {
      await setTrigger(table, events);
      try {
        const before = await lastEventId();
        const value = await run();
        return { value, eventsWritten: (await lastEventId()) - before };
      } finally {
        if (!events) await setTrigger(table, true);
      }
    },
    async restore() {
      for (const table of ["referral_trackings", "referral_codes"] as const) await setTrigger(table, true);
      await client.end();
    },
  };
}

/**
 * A rate (`measure`'s figure) with the table's created-events trigger enabled
 * and disabled, over `rounds` A/B rounds whose order alternates (on-off,
 * off-on, …) so that the drift of the machine and the growth of the tables
 * cancel: the medians, their ratio, and each round's own ratio. Fails if a
 * round without events wrote any or one with events wrote none.
 */
export async function eventsOnOff(
  admin: Awaited<ReturnType<typeof eventLogAdmin>>,
  table: EventTable,
  rounds: number,
  measure: (events: boolean, round: number) => Promise<number>,
) {
  const on: number[] = [];
  const off: number[] = [];
  const eventsWritten = { on: [] as number[], off: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    for (const events of r % 2 === 0 ? [true, false] : [false, true]) {
      const { value, eventsWritten: written } = await admin.measure(table, events, () => measure(events, r));
      if (events ? written === 0 : written !== 0) throw new Error(`${table}: ${written} events written with the trigger ${events ? "enabled" : "disabled"}`);
      (events ? on : off).push(value);
      eventsWritten[events ? "on" : "off"].push(written);
    }
  }
  // Each round's two measurements ran back to back: their ratio is what drift disturbs least.
  const pairRatios = on.map((value, r) => value / off[r]!);
  return {
    perSecond: median(on),
    withoutEventsPerSecond: median(off),
    ratio: median(on) / median(off),
    medianPairRatio: median(pairRatios),
    rounds: { on, off, pairRatios, eventsWritten },
  };
}

/** A FIXED USD program and `codes` generated codes (one BatchCreateCodes), for (7). */
export async function eventsProgram(client: Client<typeof ReferralCodeService>, programKey: string, codes: number) {
  await client.createProgram({
    program: { programKey, name: programKey, rewardKind: RewardKind.FIXED, rewardAmountMinor: 100n, rewardCurrency: "USD", maxCodesPerUser: 1000 },
  });
  const created = await client.batchCreateCodes({ programKey, userIds: Array.from({ length: codes }, (_, i) => `events-${i}`) });
  return created.codes.map((code) => code.code);
}

/** Busy and total CPU time of the machine (all cores, in clock ticks) from /proc/stat; `ticksOf` a process's own. */
function machineTicks() {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, n) => sum + n, 0);
  return { busy: total - fields[3]! - (fields[4] ?? 0), total };
}
const ticksOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
};

/**
 * Commit → consumer latency: `consumers` StreamEvents consumers (their own
 * process, bench/event-consumers.ts) on REFERRAL_CREATED events of a new program
 * while TrackReferral runs at `rate` calls/s, evenly spaced, for `rounds`
 * rounds of `seconds`. For each event a consumer receives, the time it arrived
 * minus the time the TrackReferral call that created it returned OK (matched
 * by referral id). Each round first runs the same load with no consumer
 * connected, through `baselineCodes`: the calls' own latency then is the limit the consumers' latency
 * and the calls' latency with consumers are read against. Returns each
 * round's latencies (ms, pooled over the consumers), the events expected and
 * received, the calls' latencies with and without consumers, and the share
 * of the machine's CPU (both cores) busy in each, with the consumers' process's own.
 */
export async function commitToConsumerLatency(options: {
  grpcUrl: string;
  track: ReturnType<typeof unaryCaller<typeof ReferralCodeService.method.trackReferral.input, typeof ReferralCodeService.method.trackReferral.output>>;
  /** A new program and its codes, for each round's consumers: a stream from an empty cursor has only the warm-up event to catch up. */
  newProgram: (round: number) => Promise<{ programKey: string; codes: readonly string[] }>;
  /** The codes (of another program) the load converts through with no consumer. */
  baselineCodes: readonly string[];
  consumers: number;
  rate: number;
  seconds: number;
  rounds: number;
}) {
  const { grpcUrl, track, newProgram, baselineCodes, consumers, rate, seconds, rounds } = options;
  const convert = (codes: readonly string[], id: string) =>
    track.call({ code: codes[Number(id.split("-").at(-1)) % codes.length]!, referredUserId: `${id}-user`, transactionId: `${id}-txn`, transactionAmountMinor: 1000n });
  /** A round of steady load: when each call returned (wall clock, by referral id), each call's latency from when it was due, and the machine's busy share. */
  const steady = async (codes: readonly string[], prefix: string) => {
    const returned = new Map<string, number>();
    const callLatencies: number[] = [];
    const before = machineTicks();
    await openLoop(rate, seconds, async (i, due) => {
      const body = await convert(codes, `${prefix}-${i}`);
      const at = wallNow();
      const id = fromBinary(TrackReferralResponseSchema, body).referral?.id;
      if (id === undefined) throw new Error("TrackReferral returned no referral");
      returned.set(id, at);
      callLatencies.push(performance.now() - due);
    });
    const after = machineTicks();
    return { returned, callLatencies, busy: (after.busy - before.busy) / (after.total - before.total), ticks: after.total - before.total };
  };
  const latencies: number[][] = [];
  const calls = { withConsumers: [] as number[], without: [] as number[] };
  const busy = { withConsumers: [] as number[], without: [] as number[], consumerProcess: [] as number[] };
  let expected = 0;
  for (let r = 0; r < rounds; r++) {
    const alone = await steady(baselineCodes, `events-alone-${r}`);
    calls.without.push(...alone.callLatencies);
    busy.without.push(alone.busy);

    const { programKey, codes } = await newProgram(r);
    const outFile = path.join(tmpdir(), `event-consumers-${process.pid}-${r}.json`);
    const child = spawnLines(process.execPath, ["bench/event-consumers.ts", grpcUrl, String(consumers), programKey, outFile]);
    try {
      // One conversion each consumer must see before the load starts: then its
      // stream has subscribed to the feed and caught up from the log.
      const ready = waitForLine(child.lines, (line) => line === "ready");
      await convert(codes, `events-warm-${r}-0`);
      await Promise.race([ready, sleep(30_000).then(() => Promise.reject(new Error("the StreamEvents consumers did not receive the warm-up event in 30 s")))]);
      const consumerTicks = ticksOf(child.child.pid!);
      const round = await steady(codes, `events-${r}`);
      calls.withConsumers.push(...round.callLatencies);
      busy.withConsumers.push(round.busy);
      // A share of the machine (all cores), as `busy`.
      busy.consumerProcess.push((ticksOf(child.child.pid!) - consumerTicks) / round.ticks);
      // The last events' way to the consumers (the target is 250 ms).
      await sleep(3000);
      await stop(child.child);
      const received = JSON.parse(readFileSync(outFile, "utf8")) as [string, number][][];
      const mine: number[] = [];
      for (const consumer of received) for (const [id, at] of consumer) if (round.returned.has(id)) mine.push(at - round.returned.get(id)!);
      latencies.push(mine);
      expected += consumers * round.returned.size;
    } finally {
      await stop(child.child);
      rmSync(outFile, { force: true });
    }
  }
  return { latencies, expected, received: latencies.reduce((sum, round) => sum + round.length, 0), calls, busy };
}

/** `rate` calls per second for `seconds`, evenly spaced, each sent when due whatever the others do; `due` is when (performance.now()). */
async function openLoop(rate: number, seconds: number, call: (i: number, due: number) => Promise<void>): Promise<void> {
  const total = Math.round(rate * seconds);
  const start = performance.now();
  const calls: Promise<void>[] = [];
  let i = 0;
  while (i < total) {
    while (i < total && start + (i * 1000) / rate <= performance.now()) {
      calls.push(call(i, start + (i * 1000) / rate));
      i++;
    }
    if (i < total) await sleep(Math.max(0, start + (i * 1000) / rate - performance.now()));
  }
  await Promise.all(calls);
}

/**
 * ListEvents from an empty cursor, `pageSize` at a time, each page asked
 * with the last one's next_cursor, until `target` events were read (or the log
 * ended): events per second and ms per page. The client only walks the
 * response's wire format for the events and next_cursor (a consumer's decoding
 * is its own cost); `decodeMs` is what decoding one full page takes, apart.
 */
export async function listEventsCatchUp(
  list: ReturnType<typeof unaryCaller<typeof ReferralCodeService.method.listEvents.input, typeof ReferralCodeService.method.listEvents.output>>,
  target: number,
  pageSize: number,
) {
  let cursor = "";
  let events = 0;
  const pageMs: number[] = [];
  let firstPage: Uint8Array | undefined;
  const started = performance.now();
  while (events < target) {
    const pageStarted = performance.now();
    const body = await list.call({ afterCursor: cursor, pageSize });
    pageMs.push(performance.now() - pageStarted);
    firstPage ??= body;
    let count = 0;
    const reader = new BinaryReader(body);
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === 2) cursor = reader.string();
      else {
        reader.skip(wireType);
        if (field === 1) count++;
      }
    }
    events += count;
    if (count < pageSize) break;
  }
  const seconds = (performance.now() - started) / 1000;
  // The median of five decodings of the first page (the first pays for the JIT).
  const decodings = Array.from({ length: 5 }, () => {
    const decodeStarted = performance.now();
    const decoded = fromBinary(ListEventsResponseSchema, firstPage!);
    if (decoded.events.some((event) => event.subject.case === undefined)) throw new Error("ListEvents returned an event without its subject");
    return performance.now() - decodeStarted;
  });
  const decodeMs = percentile(decodings.sort((a, b) => a - b), 0.5);
  return { events, seconds, eventsPerSecond: events / seconds, pages: pageMs.length, pageMs, decodeMs };
}
