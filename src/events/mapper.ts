import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { toCodeMessage } from "../codes/mapper.ts";
import { type Event, EventSchema, EventType as EventTypeEnum } from "../gen/referral/v1/resources_pb.js";
import { toPayoutMessage } from "../payouts/mapper.ts";
import { toProgramMessage } from "../programs/mapper.ts";
import { toReferralMessage } from "../referrals/mapper.ts";
import type { CursorCodec } from "./cursor.ts";
import type { EventSubject, EventType, ReferralEvent } from "./model.ts";

export const eventTypeNumbers: Record<EventType, EventTypeEnum> = {
  PROGRAM_CREATED: EventTypeEnum.PROGRAM_CREATED,
  PROGRAM_UPDATED: EventTypeEnum.PROGRAM_UPDATED,
  CODE_CREATED: EventTypeEnum.CODE_CREATED,
  CODE_UPDATED: EventTypeEnum.CODE_UPDATED,
  REFERRAL_CREATED: EventTypeEnum.REFERRAL_CREATED,
  REFERRAL_PAYOUT_STATUS_CHANGED: EventTypeEnum.REFERRAL_PAYOUT_STATUS_CHANGED,
  REFERRAL_REVERSED: EventTypeEnum.REFERRAL_REVERSED,
  PAYOUT_CREATED: EventTypeEnum.PAYOUT_CREATED,
  PAYOUT_PAID: EventTypeEnum.PAYOUT_PAID,
  PAYOUT_FAILED: EventTypeEnum.PAYOUT_FAILED,
};

function subjectMessage(subject: EventSubject, occurredAt: Date): Event["subject"] {
  switch (subject.kind) {
    case "program":
      return { case: "program", value: toProgramMessage(subject.program) };
    case "code":
      // Its status as it was when the change was made.
      return { case: "code", value: toCodeMessage(subject.code, occurredAt) };
    case "referral":
      return { case: "referral", value: toReferralMessage(subject.referral) };
    case "payout":
      return { case: "payout", value: toPayoutMessage(subject.payout) };
  }
}

export function toEventMessage(event: ReferralEvent, cursors: CursorCodec): Event {
  return create(EventSchema, {
    id: event.position.id.toString(),
    cursor: cursors.encode(event.position),
    type: eventTypeNumbers[event.type],
    occurredAt: timestampFromDate(event.occurredAt),
    programKey: event.programKey,
    subject: subjectMessage(event.subject, event.occurredAt),
  });
}
