import type { DatabasePool } from "slonik";
import { DomainError } from "../api/reasons.ts";
import type { Referral } from "./model.ts";
import { findReferral } from "./repository.ts";

export function referralNotFound(id: string): DomainError {
  return new DomainError("REFERRAL_NOT_FOUND", "no such referral", { referralId: id });
}

export async function getReferral(db: DatabasePool, id: string): Promise<Referral> {
  const referral = await findReferral(db, id);
  if (referral === null) throw referralNotFound(id);
  return referral;
}
