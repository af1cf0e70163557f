import type { ReferralCode } from "../codes/model.ts";
import type { Payout } from "../payouts/model.ts";
import type { Program } from "../programs/model.ts";
import type { Referral } from "../referrals/model.ts";

export const EVENT_TYPES = [
  "PROGRAM_CREATED",
  "PROGRAM_UPDATED",
  "CODE_CREATED",
  "CODE_UPDATED",
  "REFERRAL_CREATED",
  "REFERRAL_PAYOUT_STATUS_CHANGED",
  "REFERRAL_REVERSED",
  "PAYOUT_CREATED",
  "PAYOUT_PAID",
  "PAYOUT_FAILED",
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/**
 * A place in the event log: the writing transaction's id, then the event's
 * id. Events are handed out in this order, and only once every transaction
 * with a smaller id has finished, so nothing can appear behind a position
 * already handed out. `{ xid: x, id: 0n }` stands before every event of
 * transaction x: the position of a reader that has seen everything below x.
 */
export type EventPosition = { readonly xid: bigint; readonly id: bigint };

export const LOG_START: EventPosition = { xid: 0n, id: 0n };

export function comparePositions(a: EventPosition, b: EventPosition): number {
  if (a.xid !== b.xid) return a.xid < b.xid ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}

export const laterPosition = (a: EventPosition, b: EventPosition) => (comparePositions(a, b) >= 0 ? a : b);

export type EventSubject =
  | { kind: "program"; program: Program }
  | { kind: "code"; code: ReferralCode }
  | { kind: "referral"; referral: Referral }
  | { kind: "payout"; payout: Payout };

/** One change, with its resource as it was right after the change. */
export type ReferralEvent = {
  position: EventPosition;
  type: EventType;
  occurredAt: Date;
  /** Null for a payout over every program. */
  programId: bigint | null;
  /** Empty for a payout over every program. */
  programKey: string;
  subject: EventSubject;
};

/** What a reader asks for: events of these types (null: all), of this program (null: all). */
export type EventFilter = { types: readonly EventType[] | null; programKey: string | null };

export function matches(filter: EventFilter, event: Pick<ReferralEvent, "type" | "programKey">): boolean {
  return (filter.types === null || filter.types.includes(event.type)) && (filter.programKey === null || filter.programKey === event.programKey);
}
