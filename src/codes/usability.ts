import { DAY_MS } from "../platform/clock.ts";
import type { Program } from "../programs/model.ts";
import { derivedStatus, type ReferralCode } from "./model.ts";

/**
 * "Can this referred user use this code now": the one rule that
 * ValidateCode and TrackReferral both apply, so they always give the same
 * verdict and the same first failing reason. The order is the proto's
 * (ValidateCodeResponse.Reason): the code and its program, then the referred
 * user's own standing, then a use of the code for a user who needs a new one.
 */
export type UnusableReason =
  | "PROGRAM_INACTIVE"
  | "CODE_INACTIVE"
  | "CODE_SUSPENDED"
  | "CODE_EXPIRED"
  | "SELF_REFERRAL"
  | "ALREADY_REFERRED"
  | "ALREADY_CONVERTED"
  | "CONVERSION_WINDOW_CLOSED"
  | "CODE_EXHAUSTED";

export const unusableMessages: Record<UnusableReason, string> = {
  PROGRAM_INACTIVE: "the program is not active",
  CODE_INACTIVE: "the code is inactive",
  CODE_SUSPENDED: "the code is suspended",
  CODE_EXPIRED: "the code has expired",
  SELF_REFERRAL: "users cannot convert through their own code in this program",
  ALREADY_REFERRED: "the user was already referred by another referrer in this program",
  ALREADY_CONVERTED: "the user already converted in this one-time program",
  CONVERSION_WINDOW_CLOSED: "more than conversion_window_days after the user's first conversion in this program",
  CODE_EXHAUSTED: "the code has no uses left",
};

export type UsableCode = Pick<ReferralCode, "userId" | "status" | "expiresAt" | "usesCount" | "maxUses">;
export type UsableCodeProgram = Pick<Program, "active" | "allowSelfReferral" | "recurrence" | "conversionWindowDays">;

/** The referred user's standing towards a code and its program. */
export type ReferredUser = {
  id: string;
  /** Their first conversion in the program (whom they are attributed to, and since when); null: none yet. */
  firstConversion: { referrerUserId: string; convertedAt: Date } | null;
  /** Whether they hold one of the code's uses: then a conversion needs no new one. */
  holdsUse: boolean;
};

/**
 * The first rule that keeps `user` (null: anyone) from using `code` at `at`,
 * or null when it is usable. Without a user, CODE_EXHAUSTED means no use is
 * left; with one, that this user would need a new use and none is left.
 */
export function unusableReason(code: UsableCode, program: UsableCodeProgram, user: ReferredUser | null, at: Date): UnusableReason | null {
  if (!program.active) return "PROGRAM_INACTIVE";
  const status = derivedStatus({ ...code, maxUses: null }, at);
  if (status === "INACTIVE") return "CODE_INACTIVE";
  if (status === "SUSPENDED") return "CODE_SUSPENDED";
  if (status === "EXPIRED") return "CODE_EXPIRED";
  if (user !== null) {
    if (user.id === code.userId && !program.allowSelfReferral) return "SELF_REFERRAL";
    const first = user.firstConversion;
    if (first !== null) {
      if (first.referrerUserId !== code.userId) return "ALREADY_REFERRED";
      if (program.recurrence === "ONE_TIME") return "ALREADY_CONVERTED";
      const windowDays = program.conversionWindowDays;
      if (windowDays !== null && at.getTime() > first.convertedAt.getTime() + windowDays * DAY_MS) return "CONVERSION_WINDOW_CLOSED";
    }
  }
  if (needsUse(user) && code.maxUses !== null && code.usesCount >= code.maxUses) return "CODE_EXHAUSTED";
  return null;
}

/** Whether converting takes one of the code's uses: unless the referred user already holds one. */
export function needsUse(user: ReferredUser | null): boolean {
  return user === null || !user.holdsUse;
}
