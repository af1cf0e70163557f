import { type CommonQueryMethods, sql } from "slonik";
import { z } from "zod";
import { PAYOUT_PROVIDERS, type PayoutAccount, type PayoutProviderName } from "./model.ts";

// Statements on payout_accounts: where each user is paid.

const accountRow = z
  .object({
    user_id: z.string(),
    provider: z.enum(PAYOUT_PROVIDERS),
    account_ref: z.string(),
    verified_at: z.date().nullable(),
    created_at: z.date(),
    updated_at: z.date(),
  })
  .transform(
    (row): PayoutAccount => ({
      userId: row.user_id,
      provider: row.provider,
      accountRef: row.account_ref,
      verifiedAt: row.verified_at,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    }),
  );

/** Records (or replaces) where `userId` is paid; `verified` says whether the provider confirmed it. */
export async function upsertPayoutAccount(
  db: CommonQueryMethods,
  account: { userId: string; provider: PayoutProviderName; accountRef: string; verified: boolean },
): Promise<PayoutAccount> {
  return db.one(sql.type(accountRow)`
    INSERT INTO payout_accounts AS a (user_id, provider, account_ref, verified_at)
    VALUES (${account.userId}, ${account.provider}, ${account.accountRef}, CASE WHEN ${account.verified} THEN now() END)
    ON CONFLICT (user_id) DO UPDATE SET
      provider = EXCLUDED.provider, account_ref = EXCLUDED.account_ref, verified_at = EXCLUDED.verified_at, updated_at = now()
    RETURNING user_id, provider, account_ref, verified_at, created_at, updated_at
  `);
}

export async function findPayoutAccount(db: CommonQueryMethods, userId: string): Promise<PayoutAccount | null> {
  return db.maybeOne(sql.type(accountRow)`
    SELECT user_id, provider, account_ref, verified_at, created_at, updated_at FROM payout_accounts WHERE user_id = ${userId}
  `);
}
