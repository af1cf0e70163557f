/** Referral codes as the domain sees them. */
export type StoredCodeStatus = "ACTIVE" | "INACTIVE" | "SUSPENDED";
/** Stored statuses plus the ones derived when a code is read. */
export type CodeStatus = StoredCodeStatus | "EXPIRED" | "EXHAUSTED";

export type ReferralCode = {
  id: bigint;
  code: string;
  programId: bigint;
  programKey: string;
  userId: string;
  status: StoredCodeStatus;
  usesCount: number;
  maxUses: number | null;
  expiresAt: Date | null;
  vanity: boolean;
  requestId: string | null;
  metadata: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
};

/** EXPIRED and EXHAUSTED are never stored: an ACTIVE code reads as them when they apply. */
export function derivedStatus(code: Pick<ReferralCode, "status" | "expiresAt" | "usesCount" | "maxUses">, now: Date): CodeStatus {
  if (code.status !== "ACTIVE") return code.status;
  if (code.expiresAt !== null && code.expiresAt.getTime() <= now.getTime()) return "EXPIRED";
  if (code.maxUses !== null && code.usesCount >= code.maxUses) return "EXHAUSTED";
  return "ACTIVE";
}

/** Lookups ignore case and surrounding spaces; codes are stored upper-case. */
export function normalizeCode(input: string): string {
  return input.trim().toUpperCase();
}
