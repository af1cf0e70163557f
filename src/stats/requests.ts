import { z } from "zod";
import { pageSize, parseInput, programKey, timestamp } from "../api/input.ts";
import { invalidArgument } from "../api/reasons.ts";
import type { GetProgramStatsRequest, ListTopReferrersRequest } from "../gen/referral/v1/referral_code_service_pb.js";
import { DAY_MS } from "../platform/clock.ts";
import type { DayRange, LeaderboardOrder } from "./repository.ts";

const rangeFields = {
  programKey,
  startTime: timestamp.optional().transform((value) => value ?? null),
  endTime: timestamp.optional().transform((value) => value ?? null),
};

/** The range rounded out to whole UTC days: the figures are kept per day. */
function dayRange(input: { startTime: Date | null; endTime: Date | null }): DayRange {
  if (input.startTime !== null && input.endTime !== null && input.endTime.getTime() < input.startTime.getTime()) {
    throw invalidArgument("end_time", "must not be before start_time");
  }
  const floor = (date: Date) => new Date(Math.floor(date.getTime() / DAY_MS) * DAY_MS);
  const ceil = (date: Date) => new Date(Math.ceil(date.getTime() / DAY_MS) * DAY_MS);
  return { from: input.startTime === null ? null : floor(input.startTime), to: input.endTime === null ? null : ceil(input.endTime) };
}

export function parseGetProgramStats(request: GetProgramStatsRequest): { programKey: string; range: DayRange } {
  const input = parseInput(z.object(rangeFields), request);
  return { programKey: input.programKey, range: dayRange(input) };
}

const orders = { "": "conversions", conversions: "conversions", earned: "earned" } as const;

export type TopReferrersQuery = { programKey: string; range: DayRange; orderBy: LeaderboardOrder; pageSize: number; pageToken: string };

export function parseListTopReferrers(request: ListTopReferrersRequest): TopReferrersQuery {
  const input = parseInput(
    z.object({
      ...rangeFields,
      orderBy: z
        .string()
        .transform((value) => value.trim())
        .refine((value) => value in orders, 'must be "conversions" or "earned"')
        .transform((value) => orders[value as keyof typeof orders]),
      pageSize,
      pageToken: z.string().max(1024, "must be at most 1024 characters"),
    }),
    request,
  );
  return { programKey: input.programKey, range: dayRange(input), orderBy: input.orderBy, pageSize: input.pageSize, pageToken: input.pageToken };
}
