import type { ServiceImpl } from "@connectrpc/connect";
import type { DatabasePool } from "slonik";
import type { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";
import type { Clock } from "../clock.ts";
import { z } from "zod";
import { transaction } from "../db/transaction.ts";
import { DomainError } from "../errors.ts";
import { decodePageToken, page } from "../pagination.ts";
import { giveUseBack } from "../codes/repository.ts";
import { findProgramForConversion, returnToBudget } from "../programs/repository.ts";
import { toEarningsMessage, toReferralMessage } from "./mapper.ts";
import { canMovePayout } from "./model.ts";
import { earnings, findReferral, listReferrals, lockReferrals, releaseUse, reverseReferral, setPayoutStatus } from "./repository.ts";
import { createConversionReader, trackReferral } from "./track.ts";
import {
  parseGetUserEarnings,
  parseListReferrals,
  parseReferralId,
  parseReverseReferral,
  parseTrackReferral,
  parseUpdatePayoutStatus,
} from "./validation.ts";

type ReferralMethods = Pick<
  ServiceImpl<typeof ReferralCodeService>,
  "trackReferral" | "getReferral" | "listReferrals" | "updatePayoutStatus" | "reverseReferral" | "getUserEarnings"
>;

function referralNotFound(id: string): DomainError {
  return new DomainError("REFERRAL_NOT_FOUND", "no such referral", { referral_id: id });
}

export function createReferralHandlers({ db, clock, maxBackdateDays }: { db: DatabasePool; clock: Clock; maxBackdateDays: number }): ReferralMethods {
  const readContext = createConversionReader(db);
  return {
    async trackReferral(request) {
      const { referral, replayed } = await trackReferral(db, readContext, parseTrackReferral(request, clock.now(), maxBackdateDays));
      return { referral: toReferralMessage(referral), replayed };
    },

    async getReferral(request) {
      const id = parseReferralId(request.id);
      const referral = await findReferral(db, id);
      if (referral === null) throw referralNotFound(id);
      return { referral: toReferralMessage(referral) };
    },

    async listReferrals(request) {
      const { pageSize, pageToken, ...filter } = parseListReferrals(request);
      const after = decodePageToken(pageToken, filter, z.tuple([z.iso.datetime(), z.uuid()]));
      const cursor = after === null ? null : { convertedAt: new Date(after[0]), id: after[1] };
      const rows = await listReferrals(db, filter, cursor, pageSize + 1);
      const result = page(rows, pageSize, (r) => [r.convertedAt.toISOString(), r.id], filter);
      return { referrals: result.items.map(toReferralMessage), nextPageToken: result.nextPageToken };
    },

    async updatePayoutStatus(request) {
      const { referralIds, payoutStatus, payoutReference, failureReason } = parseUpdatePayoutStatus(request);
      const now = clock.now();
      const updated = await transaction(db, async (tx) => {
        const current = new Map((await lockReferrals(tx, referralIds)).map((r) => [r.id, r]));
        for (const id of referralIds) {
          const referral = current.get(id);
          if (referral === undefined) throw referralNotFound(id);
          if (!canMovePayout(referral.payoutStatus, payoutStatus)) {
            throw new DomainError("INVALID_PAYOUT_TRANSITION", `a ${referral.payoutStatus} referral cannot become ${payoutStatus}`, {
              referral_id: id,
              from: referral.payoutStatus,
              to: payoutStatus,
            });
          }
          if (payoutStatus !== "PENDING" && referral.payableAt.getTime() > now.getTime()) {
            throw new DomainError("NOT_YET_PAYABLE", `the reward is in its hold until ${referral.payableAt.toISOString()}`, {
              referral_id: id,
              payable_at: referral.payableAt.toISOString(),
            });
          }
        }
        return setPayoutStatus(tx, referralIds, { status: payoutStatus, payoutReference, failureReason, now });
      });
      const byId = new Map(updated.map((r) => [r.id, r]));
      return { referrals: referralIds.map((id) => toReferralMessage(byId.get(id)!)) };
    },

    async reverseReferral(request) {
      const { id, reason } = parseReverseReferral(request);
      const reversed = await transaction(db, async (tx) => {
        const referral = await reverseReferral(tx, id, reason, clock.now());
        if (referral === null) {
          const existing = await findReferral(tx, id);
          if (existing === null) throw referralNotFound(id);
          throw new DomainError("INVALID_PAYOUT_TRANSITION", "the referral is already reversed", {
            referral_id: id,
            from: existing.payoutStatus,
            to: "REVERSED",
          });
        }
        // The program read takes a key-share lock only; the code's use goes back
        // before the budget, the order TrackReferral locks them in.
        const program = await findProgramForConversion(tx, referral.programId);
        if (program.reversalFreesUse && (await releaseUse(tx, referral))) await giveUseBack(tx, referral.codeId);
        if (referral.amountEarnedMinor > 0n) await returnToBudget(tx, program.id, referral.amountEarnedMinor);
        return referral;
      });
      return { referral: toReferralMessage(reversed) };
    },

    async getUserEarnings(request) {
      const { userId, programKey } = parseGetUserEarnings(request);
      const rows = await earnings(db, userId, programKey, clock.now());
      return { userId, earnings: rows.map(toEarningsMessage) };
    },
  };
}
