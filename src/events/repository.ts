import { type CommonQueryMethods, sql } from "slonik";
import { z } from "zod";
import { codeColumns, codeFields, toReferralCode } from "../codes/repository.ts";
import { payoutColumns, payoutFields, toPayout } from "../payouts/repository.ts";
import { programColumns, programFields, toProgram } from "../programs/repository.ts";
import { referralColumns, referralFields, referralJoins, toReferral } from "../referrals/repository.ts";
import { EVENT_TYPES, type EventFilter, type EventPosition, type EventSubject, type EventType, type ReferralEvent } from "./model.ts";

// Statements on the event log. Reads and prunes referral_events (written only
// by the triggers of sql/0009_referral_events.sql) and reads and moves
// referral_event_log's pruned position. Reads each event's subject, a row of
// its table as it was (sql/0012's snapshot types), joined with the program
// and code it names.

/** The xmin of the statement's snapshot: every transaction with a smaller id has finished. */
const horizon = sql.fragment`pg_snapshot_xmin(pg_current_snapshot())::text::bigint`;

export async function readCursorKey(db: CommonQueryMethods): Promise<Buffer> {
  return db.oneFirst(sql.type(z.object({ cursor_key: z.instanceof(Buffer) }))`SELECT cursor_key FROM referral_event_log`);
}

const headRow = z.object({
  last_xid: z.bigint().nullable(),
  last_id: z.bigint().nullable(),
  pruned_xid: z.bigint(),
  pruned_id: z.bigint(),
  held_since: z.date().nullable(),
  xid: z.bigint().nullable(),
  id: z.bigint().nullable(),
  type: z.enum(EVENT_TYPES).nullable(),
  occurred_at: z.date().nullable(),
  program_id: z.bigint().nullable(),
  program_key: z.string().nullable(),
});

type EventHead = Omit<ReferralEvent, "subject">;

export type EventPage = {
  /** The events after the position asked for (or after `pruned`, when that is later), in log order. */
  events: readonly ReferralEvent[];
  /**
   * The newest event of a finished transaction, read in the same snapshot;
   * null: none. Pages resume from events, never from an xmin itself: after a
   * crash PostgreSQL may hand out again the ids of transactions that left
   * nothing durable, so a new event could lie below an xmin read before the
   * crash, but never below an event that was committed.
   */
  lastFinished: EventPosition | null;
  /** Events up to this position were pruned. */
  pruned: EventPosition;
  /** When the oldest event still held back by an unfinished transaction was written; null: none is. */
  heldSince: Date | null;
};

/**
 * Up to `limit` events after `after` that match `filter`, from finished
 * transactions only, with the newest such event and the pruned position read
 * in the same snapshot (one statement): so a page is complete up to its last
 * event, and a short page up to the newest finished event.
 */
export async function readEvents(
  db: CommonQueryMethods,
  request: { after: EventPosition; filter: EventFilter; limit: number },
): Promise<EventPage> {
  const { after, filter, limit } = request;
  const conditions = [sql.fragment`(e.xid, e.id) > (log.start_xid, log.start_id)`, sql.fragment`e.xid < log.xmin`];
  if (filter.types !== null) conditions.push(sql.fragment`e.type = ANY(${sql.array(filter.types, "text")})`);
  if (filter.programKey !== null) {
    conditions.push(sql.fragment`e.program_id = (SELECT id FROM referral_programs WHERE program_key = ${filter.programKey})`);
  }
  const rows = await db.any(sql.type(headRow)`
    WITH log AS (
      SELECT ${horizon} AS xmin, l.pruned_xid, l.pruned_id,
        CASE WHEN (${after.xid}::bigint, ${after.id}::bigint) > (l.pruned_xid, l.pruned_id) THEN ${after.xid}::bigint ELSE l.pruned_xid END AS start_xid,
        CASE WHEN (${after.xid}::bigint, ${after.id}::bigint) > (l.pruned_xid, l.pruned_id) THEN ${after.id}::bigint ELSE l.pruned_id END AS start_id
      FROM referral_event_log l
    )
    SELECT last.xid AS last_xid, last.id AS last_id, log.pruned_xid, log.pruned_id, e.xid, e.id, e.type, e.occurred_at, e.program_id, p.program_key,
      (SELECT h.occurred_at FROM referral_events h WHERE h.xid >= log.xmin ORDER BY h.xid, h.id LIMIT 1) AS held_since
    FROM log
    LEFT JOIN LATERAL (
      SELECT h.xid, h.id FROM referral_events h WHERE h.xid < log.xmin ORDER BY h.xid DESC, h.id DESC LIMIT 1
    ) last ON true
    LEFT JOIN LATERAL (
      SELECT e.xid, e.id, e.type, e.occurred_at, e.program_id FROM referral_events e
      WHERE ${sql.join(conditions, sql.fragment` AND `)}
      ORDER BY e.xid, e.id
      LIMIT ${limit}
    ) e ON true
    LEFT JOIN referral_programs p ON p.id = e.program_id
    ORDER BY e.xid, e.id
  `);
  const first = rows[0];
  if (first === undefined) throw new TypeError("referral_event_log has no row (migration 0009 not applied?)");
  const heads: EventHead[] = [];
  for (const row of rows) {
    // No event matched: the page's one row carries only the log's head.
    if (row.xid === null || row.id === null || row.type === null || row.occurred_at === null) continue;
    heads.push({
      position: { xid: row.xid, id: row.id },
      type: row.type,
      occurredAt: row.occurred_at,
      programId: row.program_id,
      programKey: row.program_key ?? "",
    });
  }
  return {
    events: await withSubjects(db, heads),
    lastFinished: first.last_xid === null || first.last_id === null ? null : { xid: first.last_xid, id: first.last_id },
    pruned: { xid: first.pruned_xid, id: first.pruned_id },
    heldSince: first.held_since,
  };
}

const subjectKinds: Record<EventType, EventSubject["kind"]> = {
  PROGRAM_CREATED: "program",
  PROGRAM_UPDATED: "program",
  CODE_CREATED: "code",
  CODE_UPDATED: "code",
  REFERRAL_CREATED: "referral",
  REFERRAL_PAYOUT_STATUS_CHANGED: "referral",
  REFERRAL_REVERSED: "referral",
  PAYOUT_CREATED: "payout",
  PAYOUT_PAID: "payout",
  PAYOUT_FAILED: "payout",
};

/** Thrown when an event vanished between reading its head and its subject: it was pruned meanwhile. */
export class EventPrunedError extends Error {}

/**
 * The subjects of `heads`, read from each event's snapshot of its row and
 * mapped as the resource's own reads map it: one statement per kind of
 * subject present.
 */
async function withSubjects(db: CommonQueryMethods, heads: readonly EventHead[]): Promise<ReferralEvent[]> {
  const subjects = new Map<bigint, EventSubject>();
  const ofKind = (kind: EventSubject["kind"]) => heads.filter((head) => subjectKinds[head.type] === kind);
  const keys = (of: readonly EventHead[]) => sql.fragment`
    unnest(${sql.array(of.map((h) => h.position.xid.toString()), "int8")}, ${sql.array(of.map((h) => h.position.id.toString()), "int8")}) AS k(xid, id)
    JOIN referral_events e ON e.xid = k.xid AND e.id = k.id
  `;
  const programs = ofKind("program");
  if (programs.length > 0) {
    const rows = await db.any(sql.type(programFields.extend({ event_id: z.bigint() }))`
      SELECT e.id AS event_id, s.* FROM ${keys(programs)}
      CROSS JOIN LATERAL (SELECT ${programColumns} FROM (SELECT (e.program).*) p) s
    `);
    for (const row of rows) subjects.set(row.event_id, { kind: "program", program: toProgram(row) });
  }
  const codes = ofKind("code");
  if (codes.length > 0) {
    const rows = await db.any(sql.type(codeFields.extend({ event_id: z.bigint() }))`
      SELECT e.id AS event_id, ${codeColumns} FROM ${keys(codes)}
      CROSS JOIN LATERAL (SELECT (e.code).*) c
      JOIN referral_programs p ON p.id = c.program_id
    `);
    for (const row of rows) subjects.set(row.event_id, { kind: "code", code: toReferralCode(row) });
  }
  const referrals = ofKind("referral");
  if (referrals.length > 0) {
    const rows = await db.any(sql.type(referralFields.extend({ event_id: z.bigint() }))`
      SELECT e.id AS event_id, ${referralColumns} FROM ${keys(referrals)}
      CROSS JOIN LATERAL (SELECT (e.referral).*) t
      ${referralJoins}
    `);
    for (const row of rows) subjects.set(row.event_id, { kind: "referral", referral: toReferral(row) });
  }
  const payouts = ofKind("payout");
  if (payouts.length > 0) {
    const rows = await db.any(sql.type(payoutFields.extend({ event_id: z.bigint() }))`
      SELECT e.id AS event_id, ${payoutColumns} FROM ${keys(payouts)}
      CROSS JOIN LATERAL (SELECT (e.payout).*) o
    `);
    for (const row of rows) subjects.set(row.event_id, { kind: "payout", payout: toPayout(row) });
  }
  return heads.map((head) => {
    const subject = subjects.get(head.position.id);
    if (subject === undefined) throw new EventPrunedError(`event ${head.position.id} was pruned while it was read`);
    return { ...head, subject };
  });
}

/** Key of the advisory lock that lets one replica at a time prune. */
const PRUNE_LOCK = 0x52_45_56_54; // "REVT"

/**
 * Prunes up to `batch` of the oldest events, through the newest of them that
 * occurred more than `olderThanSeconds` ago (by the database's clock), and moves the pruned position there, in one short
 * statement (its own transaction, which holds back the log while it runs).
 * Does nothing while another replica prunes. Returns how many were deleted.
 */
export async function pruneEvents(db: CommonQueryMethods, olderThanSeconds: number, batch: number): Promise<number> {
  const deleted = await db.maybeOneFirst(sql.type(z.object({ deleted: z.number().int() }))`
    WITH lock AS (
      SELECT pg_try_advisory_xact_lock(${PRUNE_LOCK}) AS held
    ), oldest AS (
      SELECT e.xid, e.id, e.occurred_at FROM referral_events e
      WHERE (SELECT held FROM lock) AND e.xid < ${horizon}
      ORDER BY e.xid, e.id
      LIMIT ${batch}
    ), boundary AS (
      SELECT xid, id FROM oldest WHERE occurred_at < now() - make_interval(secs => ${olderThanSeconds}) ORDER BY xid DESC, id DESC LIMIT 1
    ), deleted AS (
      DELETE FROM referral_events e USING oldest o, boundary b
      WHERE e.xid = o.xid AND e.id = o.id AND (o.xid, o.id) <= (b.xid, b.id)
      RETURNING 1
    )
    UPDATE referral_event_log l SET pruned_xid = b.xid, pruned_id = b.id
    FROM boundary b
    WHERE (b.xid, b.id) > (l.pruned_xid, l.pruned_id)
    RETURNING (SELECT count(*)::integer FROM deleted) AS deleted
  `);
  return deleted ?? 0;
}
