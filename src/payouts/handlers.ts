import type { ServiceImpl } from "@connectrpc/connect";
import type { DatabasePool } from "slonik";
import { z } from "zod";
import { decodePageToken, page } from "../api/pagination.ts";
import { withConnection } from "../db/transaction.ts";
import type { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";
import type { Clock } from "../platform/clock.ts";
import { getPayoutAccount, type PayoutProviders, setPayoutAccount } from "./accounts.ts";
import { createPayouts } from "./create.ts";
import { toPayoutAccountMessage, toPayoutMessage } from "./mapper.ts";
import { listPayouts } from "./repository.ts";
import {
  parseCreatePayouts,
  parseListPayouts,
  parseMarkPayoutFailed,
  parseMarkPayoutPaid,
  parsePayoutId,
  parseSetPayoutAccount,
  parseUserId,
} from "./requests.ts";
import { approve, cancel, getPayout, markFailed, markPaid } from "./settle.ts";

type PayoutMethods = Pick<
  ServiceImpl<typeof ReferralCodeService>,
  | "setPayoutAccount"
  | "getPayoutAccount"
  | "createPayouts"
  | "getPayout"
  | "listPayouts"
  | "approvePayout"
  | "cancelPayout"
  | "markPayoutPaid"
  | "markPayoutFailed"
>;

/** Keyset of a ListPayouts page: the last payout's creation time (ms since the epoch; payouts keep ms) and id. */
const listKey = z.tuple([z.string().regex(/^\d{1,16}$/), z.uuid()]);

/** The payout RPCs: decode, call the use case, encode. */
export function createPayoutHandlers(deps: { db: DatabasePool; reads: DatabasePool; clock: Clock; providers: PayoutProviders }): PayoutMethods {
  const { db, reads } = deps;
  return {
    async setPayoutAccount(request) {
      return { account: toPayoutAccountMessage(await setPayoutAccount(deps, parseSetPayoutAccount(request))) };
    },

    async getPayoutAccount(request) {
      return { account: toPayoutAccountMessage(await getPayoutAccount(reads, parseUserId(request.userId))) };
    },

    async createPayouts(request) {
      const run = await createPayouts(deps, parseCreatePayouts(request));
      return {
        payouts: run.payouts.map(toPayoutMessage),
        skippedWithoutAccount: run.skippedWithoutAccount,
        skippedBelowMinimum: run.skippedBelowMinimum,
      };
    },

    async getPayout(request) {
      return { payout: toPayoutMessage(await getPayout(reads, parsePayoutId(request.id))) };
    },

    async listPayouts(request) {
      const { pageSize, pageToken, ...filter } = parseListPayouts(request);
      const filters = { ...filter, createdAfter: filter.createdAfter?.getTime() ?? null, createdBefore: filter.createdBefore?.getTime() ?? null };
      const after = decodePageToken(pageToken, filters, listKey);
      const rows = await withConnection(reads, (connection) =>
        listPayouts(connection, filter, after === null ? null : { createdAt: new Date(Number(after[0])), id: after[1] }, pageSize + 1),
      );
      const { items, nextPageToken } = page(rows, pageSize, (payout) => [String(payout.createdAt.getTime()), payout.id], filters);
      return { payouts: items.map(toPayoutMessage), nextPageToken };
    },

    async approvePayout(request) {
      return { payout: toPayoutMessage(await approve(db, parsePayoutId(request.id))) };
    },

    async cancelPayout(request) {
      return { payout: toPayoutMessage(await cancel(db, parsePayoutId(request.id))) };
    },

    async markPayoutPaid(request) {
      const { id, reference } = parseMarkPayoutPaid(request);
      return { payout: toPayoutMessage(await markPaid(deps, id, reference)) };
    },

    async markPayoutFailed(request) {
      const { id, reason } = parseMarkPayoutFailed(request);
      return { payout: toPayoutMessage(await markFailed(deps, id, reason)) };
    },
  };
}
