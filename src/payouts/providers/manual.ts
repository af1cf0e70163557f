import type { PayoutProvider } from "./provider.ts";

/**
 * Manual payouts: an operator pays outside the service and then marks the
 * payout PAID or FAILED. Any non-empty reference (at most 200 characters) is
 * accepted; nothing is ever sent, so a manual payout stays PROCESSING, just as
 * an ambiguous one does, until the operator decides.
 */
export const manualProvider: PayoutProvider = {
  kind: "MANUAL",
  async verifyAccount(accountRef) {
    const trimmed = accountRef.trim();
    if (trimmed.length === 0) return { status: "refused", reason: "the reference is empty" };
    if (trimmed.length > 200) return { status: "refused", reason: "the reference is longer than 200 characters" };
    return { status: "ok" };
  },
  async sendTransfer() {
    return { status: "ambiguous", detail: "manual payouts are paid by an operator, who then marks them paid or failed" };
  },
};
