import type { DatabasePool } from "slonik";
import { DomainError } from "../api/reasons.ts";
import { giveUseBack } from "../codes/repository.ts";
import { transaction } from "../db/transaction.ts";
import { findProgramForConversion, returnToBudget } from "../programs/repository.ts";
import { referralNotFound } from "./lookup.ts";
import type { Referral } from "./model.ts";
import { findReferral, releaseUse, reverseReferral as markReversed } from "./repository.ts";

/**
 * ReverseReferral (a refund or chargeback) in one transaction: the referral
 * becomes REVERSED (a clawback when it was PAID) and frees its reward slot;
 * with reversal_frees_use, the code gets its use back once none of the
 * referred user's conversions through it stands; the reward goes back to the
 * program's budget. Rows are locked in the order TrackReferral locks them:
 * code, then program.
 */
export async function reverseReferral(db: DatabasePool, id: string, reason: string, now: Date): Promise<Referral> {
  return transaction(db, async (tx) => {
    const referral = await markReversed(tx, id, reason, now);
    if (referral === null) {
      const existing = await findReferral(tx, id);
      if (existing === null) throw referralNotFound(id);
      throw new DomainError("INVALID_PAYOUT_TRANSITION", "the referral is already reversed", {
        referralId: id,
        from: existing.payoutStatus,
        to: "REVERSED",
      });
    }
    // The program read takes a key-share lock only.
    const program = await findProgramForConversion(tx, referral.programId);
    if (program.reversalFreesUse && (await releaseUse(tx, referral))) await giveUseBack(tx, referral.codeId);
    const granted = referral.amountEarnedMinor + referral.refereeRewardMinor;
    if (granted > 0n) await returnToBudget(tx, program.id, granted);
    return referral;
  });
}
