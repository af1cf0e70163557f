import type { ServiceImpl } from "@connectrpc/connect";
import type { DatabasePool } from "slonik";
import { z } from "zod";
import { decodePageToken, page } from "../api/pagination.ts";
import type { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";
import type { Clock } from "../platform/clock.ts";
import { getReferral } from "./lookup.ts";
import { toEarningsMessage, toReferralMessage } from "./mapper.ts";
import { updatePayoutStatus } from "./payouts.ts";
import { earnings, listReferrals } from "./repository.ts";
import {
  parseGetUserEarnings,
  parseListReferrals,
  parseReferralId,
  parseReverseReferral,
  parseTrackReferral,
  parseUpdatePayoutStatus,
} from "./requests.ts";
import { reverseReferral } from "./reverse.ts";
import { createConversionReader, trackReferral } from "./track.ts";

type ReferralMethods = Pick<
  ServiceImpl<typeof ReferralCodeService>,
  "trackReferral" | "getReferral" | "listReferrals" | "updatePayoutStatus" | "reverseReferral" | "getUserEarnings"
>;

/** The referral RPCs: decode the request, call the use case (a plain read: the repository), encode. */
export function createReferralHandlers(deps: { db: DatabasePool; reads: DatabasePool; clock: Clock; maxBackdateDays: number }): ReferralMethods {
  const { db, reads, clock, maxBackdateDays } = deps;
  const readContext = createConversionReader(db);
  return {
    async trackReferral(request) {
      const { referral, replayed } = await trackReferral(db, readContext, parseTrackReferral(request, clock.now(), maxBackdateDays));
      return { referral: toReferralMessage(referral), replayed };
    },

    async getReferral(request) {
      return { referral: toReferralMessage(await getReferral(reads, parseReferralId(request.id))) };
    },

    async listReferrals(request) {
      const { pageSize, pageToken, ...filter } = parseListReferrals(request);
      const after = decodePageToken(pageToken, filter, z.tuple([z.iso.datetime(), z.uuid()]));
      const cursor = after === null ? null : { convertedAt: new Date(after[0]), id: after[1] };
      const rows = await listReferrals(reads, filter, cursor, pageSize + 1);
      const result = page(rows, pageSize, (r) => [r.convertedAt.toISOString(), r.id], filter);
      return { referrals: result.items.map(toReferralMessage), nextPageToken: result.nextPageToken };
    },

    async updatePayoutStatus(request) {
      const { referralIds, payoutStatus, payoutReference, failureReason } = parseUpdatePayoutStatus(request);
      const updated = await updatePayoutStatus(db, referralIds, { status: payoutStatus, payoutReference, failureReason, now: clock.now() });
      return { referrals: updated.map(toReferralMessage) };
    },

    async reverseReferral(request) {
      const { id, reason } = parseReverseReferral(request);
      return { referral: toReferralMessage(await reverseReferral(db, id, reason, clock.now())) };
    },

    async getUserEarnings(request) {
      const { userId, programKey } = parseGetUserEarnings(request);
      const rows = await earnings(reads, userId, programKey, clock.now());
      return { userId, earnings: rows.map(toEarningsMessage) };
    },
  };
}
