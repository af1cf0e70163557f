import type { ServiceImpl } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { DatabasePool } from "slonik";
import { z } from "zod";
import { decodePageToken, page } from "../api/pagination.ts";
import { DomainError } from "../api/reasons.ts";
import { withConnection } from "../db/transaction.ts";
import type { ReferralCodeService } from "../gen/referral/v1/referral_code_service_pb.js";
import { findProgramByKey } from "../programs/repository.ts";
import { programStats, statsAsOf, topReferrers } from "./repository.ts";
import { parseGetProgramStats, parseListTopReferrers } from "./requests.ts";

type StatsMethods = Pick<ServiceImpl<typeof ReferralCodeService>, "getProgramStats" | "listTopReferrers">;

const programNotFound = (programKey: string) => new DomainError("PROGRAM_NOT_FOUND", "no such program", { programKey });
const time = (date: Date | null) => (date === null ? undefined : timestampFromDate(date));

/** Keyset of a leaderboard page: the last row's value (decimal) and user. */
const leaderboardKey = z.tuple([z.string().regex(/^-?\d{1,19}$/), z.string().max(200)]);

/** The statistics RPCs: decode, read the rollups (one statement each), encode. */
export function createStatsHandlers(deps: { reads: DatabasePool }): StatsMethods {
  const { reads } = deps;
  return {
    async getProgramStats(request) {
      const { programKey, range } = parseGetProgramStats(request);
      const stats = await withConnection(reads, (connection) => programStats(connection, programKey, range));
      if (stats === null) throw programNotFound(programKey);
      return {
        stats: {
          programKey,
          startTime: time(range.from),
          endTime: time(range.to),
          codesIssued: stats.codesIssued,
          codesActive: stats.codesActive,
          conversions: stats.conversions,
          referredUsers: stats.referredUsers,
          referrerRewardsGrantedMinor: stats.referrerRewardsGrantedMinor,
          referrerRewardsReversedMinor: stats.referrerRewardsReversedMinor,
          referrerRewardsPaidMinor: stats.referrerRewardsPaidMinor,
          refereeRewardsGrantedMinor: stats.refereeRewardsGrantedMinor,
          budgetRemainingMinor: stats.budgetRemainingMinor ?? undefined,
          currency: stats.currency,
          asOf: timestampFromDate(stats.asOf),
        },
      };
    },

    async listTopReferrers(request) {
      const query = parseListTopReferrers(request);
      const filters = { programKey: query.programKey, from: query.range.from?.getTime() ?? null, to: query.range.to?.getTime() ?? null, orderBy: query.orderBy };
      const after = decodePageToken(query.pageToken, filters, leaderboardKey);
      return withConnection(reads, async (connection) => {
        const program = await findProgramByKey(connection, query.programKey);
        if (program === null) throw programNotFound(query.programKey);
        const rows = await topReferrers(connection, {
          programId: program.id,
          range: query.range,
          orderBy: query.orderBy,
          after: after === null ? null : { value: BigInt(after[0]), referrerUserId: after[1] },
          limit: query.pageSize + 1,
        });
        const valueOf = (row: (typeof rows)[number]) => (query.orderBy === "conversions" ? row.conversions : row.earnedMinor);
        const { items, nextPageToken } = page(rows, query.pageSize, (row) => [valueOf(row).toString(), row.referrerUserId], filters);
        return { referrers: items, nextPageToken, asOf: timestampFromDate(await statsAsOf(connection)) };
      });
    },
  };
}
