import type { DatabasePool, DatabasePoolConnection } from "slonik";
import { DomainError } from "../api/reasons.ts";
import { withConnection } from "../db/transaction.ts";
import type { Clock } from "../platform/clock.ts";
import type { Payout, PayoutState } from "./model.ts";
import { approvePayout, cancelPayout, findPayout, settleFailed, settlePaid } from "./repository.ts";

// The operator's moves on a payout. Each is one conditional statement: the
// state it requires is checked where it is changed, so a worker sending the
// payout at the same moment either went first (the move fails
// INVALID_PAYOUT_STATE) or waits for it.

const payoutNotFound = (id: string) => new DomainError("PAYOUT_NOT_FOUND", "no such payout", { payoutId: id });

export async function getPayout(db: DatabasePool, id: string): Promise<Payout> {
  const payout = await withConnection(db, (connection) => findPayout(connection, id));
  if (payout === null) throw payoutNotFound(id);
  return payout;
}

/** Runs a conditional move; when it changed nothing, says why: no such payout, or the state it is in. */
async function move(db: DatabasePool, id: string, allowed: string, change: (connection: DatabasePoolConnection) => Promise<Payout | null>): Promise<Payout> {
  return withConnection(db, async (connection) => {
    const moved = await change(connection);
    if (moved !== null) return moved;
    const payout = await findPayout(connection, id);
    if (payout === null) throw payoutNotFound(id);
    throw invalidState(payout.state, allowed, id);
  });
}

const invalidState = (state: PayoutState, allowed: string, id: string) =>
  new DomainError("INVALID_PAYOUT_STATE", `the payout is ${state}; this needs ${allowed}`, { payoutId: id, state });

export const approve = (db: DatabasePool, id: string) => move(db, id, "REQUIRES_REVIEW", (c) => approvePayout(c, id));

export const cancel = (db: DatabasePool, id: string) => move(db, id, "REQUIRES_REVIEW or PENDING (not sent yet)", (c) => cancelPayout(c, id));

export const markPaid = (deps: { db: DatabasePool; clock: Clock }, id: string, reference: string) =>
  move(deps.db, id, "a manual payout in PROCESSING", (c) => settlePaid(c, { id, manualOnly: true }, reference, deps.clock.now()));

export const markFailed = (deps: { db: DatabasePool; clock: Clock }, id: string, reason: string) =>
  move(deps.db, id, "a manual payout in PROCESSING", (c) => settleFailed(c, { id, manualOnly: true }, reason, deps.clock.now()));
