import { z } from "zod";
import { parseInput, programKey } from "../api/input.ts";
import { EventType as EventTypeEnum } from "../gen/referral/v1/resources_pb.js";
import type { ListEventsRequest, StreamEventsRequest } from "../gen/referral/v1/referral_code_service_pb.js";
import { eventTypeNumbers } from "./mapper.ts";
import type { EventFilter, EventType } from "./model.ts";

const typesByNumber = new Map<number, EventType>(Object.entries(eventTypeNumbers).map(([name, number]) => [number, name as EventType]));

const filterFields = {
  afterCursor: z.string().max(64, "is not a cursor returned by ListEvents or StreamEvents"),
  types: z
    .array(
      z
        .number()
        .refine((value) => value !== EventTypeEnum.UNSPECIFIED && typesByNumber.has(value), "must be an EventType other than EVENT_TYPE_UNSPECIFIED")
        .transform((value) => typesByNumber.get(value) as EventType),
    )
    .max(16, "must name at most 16 types")
    .transform((types) => (types.length === 0 ? null : [...new Set(types)])),
  programKey: z.string().transform((v) => (v === "" ? null : v)).pipe(programKey.nullable()),
};

const listSchema = z.object({
  ...filterFields,
  pageSize: z
    .number()
    .int()
    .min(0, "must not be negative")
    .max(1000, "must be at most 1000")
    .transform((size) => (size === 0 ? 100 : size)),
});

export type EventsRequest = { afterCursor: string; filter: EventFilter };

export function parseListEvents(request: ListEventsRequest): EventsRequest & { pageSize: number } {
  const input = parseInput(listSchema, request);
  return { afterCursor: input.afterCursor, pageSize: input.pageSize, filter: { types: input.types, programKey: input.programKey } };
}

export function parseStreamEvents(request: StreamEventsRequest): EventsRequest {
  const input = parseInput(z.object(filterFields), request);
  return { afterCursor: input.afterCursor, filter: { types: input.types, programKey: input.programKey } };
}
