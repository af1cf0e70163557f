import type { DatabasePool } from "slonik";
import { DomainError } from "../api/reasons.ts";
import { transaction } from "../db/transaction.ts";
import { referralNotFound } from "./lookup.ts";
import { canMovePayout, type PayoutStatus, type Referral } from "./model.ts";
import { lockReferrals, setPayoutStatus } from "./repository.ts";

export type PayoutChange = { status: PayoutStatus; payoutReference: string | null; failureReason: string | null; now: Date };

/**
 * UpdatePayoutStatus: moves every referral to `change.status`, all or nothing.
 * The referrals are locked first (in id order, so concurrent batches cannot
 * deadlock), then each must exist, be in no payout of this service (CreatePayouts),
 * allow the transition, and (for PAID or FAILED) be past its hold. Answers in the order asked.
 */
export async function updatePayoutStatus(db: DatabasePool, ids: readonly string[], change: PayoutChange): Promise<Referral[]> {
  const updated = await transaction(db, async (tx) => {
    const current = new Map((await lockReferrals(tx, ids)).map((r) => [r.id, r]));
    for (const id of ids) {
      const referral = current.get(id);
      if (referral === undefined) throw referralNotFound(id);
      if (referral.payoutId !== null) {
        throw new DomainError("REFERRAL_IN_PAYOUT", "the reward belongs to a payout of this service: its payout decides its status", {
          referralId: id,
          payoutId: referral.payoutId,
        });
      }
      if (!canMovePayout(referral.payoutStatus, change.status)) {
        throw new DomainError("INVALID_PAYOUT_TRANSITION", `a ${referral.payoutStatus} referral cannot become ${change.status}`, {
          referralId: id,
          from: referral.payoutStatus,
          to: change.status,
        });
      }
      if (change.status !== "PENDING" && referral.payableAt.getTime() > change.now.getTime()) {
        throw new DomainError("NOT_YET_PAYABLE", `the reward is in its hold until ${referral.payableAt.toISOString()}`, {
          referralId: id,
          payableAt: referral.payableAt.toISOString(),
        });
      }
    }
    return setPayoutStatus(tx, ids, change);
  });
  const byId = new Map(updated.map((r) => [r.id, r]));
  return ids.map((id) => byId.get(id)!);
}
