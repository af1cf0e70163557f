import type { DatabasePool } from "slonik";
import { DomainError } from "../api/reasons.ts";
import { withConnection } from "../db/transaction.ts";
import { findPayoutAccount, upsertPayoutAccount } from "./account-repository.ts";
import type { PayoutAccount, PayoutProviderName } from "./model.ts";
import type { PayoutProvider } from "./providers/provider.ts";

export type PayoutProviders = ReadonlyMap<PayoutProviderName, PayoutProvider>;

/** The configured provider of `name`, or PAYOUT_PROVIDER_NOT_CONFIGURED. */
function providerOf(providers: PayoutProviders, name: PayoutProviderName): PayoutProvider {
  const provider = providers.get(name);
  if (provider === undefined) {
    throw new DomainError("PAYOUT_PROVIDER_NOT_CONFIGURED", `${name} payouts are not configured on this service (no credentials in its environment)`, {
      provider: name,
    });
  }
  return provider;
}

/**
 * SetPayoutAccount: asks the provider whether the account can be paid, then
 * records it. Manual references are not checked with anyone.
 */
export async function setPayoutAccount(
  deps: { db: DatabasePool; providers: PayoutProviders },
  account: { userId: string; provider: PayoutProviderName; accountRef: string },
): Promise<PayoutAccount> {
  const check = await providerOf(deps.providers, account.provider).verifyAccount(account.accountRef);
  if (check.status === "refused") {
    throw new DomainError("PAYOUT_ACCOUNT_INVALID", `the provider refused the account: ${check.reason}`, {
      field: "account.account_ref",
      provider: account.provider,
    });
  }
  if (check.status === "unavailable") {
    throw new DomainError("PAYOUT_PROVIDER_UNAVAILABLE", `the provider could not be asked about the account: ${check.detail}`, {
      provider: account.provider,
    });
  }
  return withConnection(deps.db, (db) => upsertPayoutAccount(db, { ...account, verified: account.provider !== "MANUAL" }));
}

export async function getPayoutAccount(db: DatabasePool, userId: string): Promise<PayoutAccount> {
  const account = await withConnection(db, (connection) => findPayoutAccount(connection, userId));
  if (account === null) throw new DomainError("PAYOUT_ACCOUNT_NOT_FOUND", "the user has no payout account", { userId });
  return account;
}
