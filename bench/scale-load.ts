/**
 * Loads `codes` referral codes and `conversions` conversions straight into the
 * tables with set-based SQL (INSERT … SELECT over generate_series, a chunk per
 * statement), not through the API. Every row satisfies the tables' constraints;
 * the derived counters agree with the rows (a code's uses_count is the number
 * of its conversions holding a use; the programs have no budget, so their
 * rewards_granted_minor stays 0, as the service keeps it).
 *
 * The shape, all deterministic (no random(): the same sizes load the same rows):
 * - 12 programs of their own besides the bench program, of very unequal sizes:
 *   the bench program takes half the users (about half the codes: 5 M of
 *   10 M), the next 15 %, 8 %, … 1 %;
 *   FIXED and PERCENTAGE, USD/EUR/GBP, hold of 0–30 days; codes look like the
 *   service's ([PREFIX-] then 12 hex digits, in no particular order);
 * - users hold 1 to 5 codes each (3 on average) in one program;
 * - 3 codes in 10 convert; a converting code has about
 *   (conversions × 0.8) / (codes × 0.3) conversions;
 * - 5 heavy referrers ("whale-1" … "whale-5", one code each in the bench
 *   program) take 8 %, 4 %, 2 %, 1 % and 0.5 % of the conversions, and 1,000
 *   mid-size ones ("influencer-1" …) share 4.5 %;
 * - every conversion is a distinct referred user's first, converted_at spread
 *   over the last 5 years; older than 30 days: 85 % PAID, 3 % REVERSED (one in
 *   three of them a clawback of a paid reward), 2 % FAILED, the rest PENDING;
 * - 2 % of the codes INACTIVE, 1 % SUSPENDED, 10 % with an expiry four years
 *   after creation (those of the oldest year past: 2 % EXPIRED), 5 % with
 *   max_uses: 1,000 (never reached), or, for one code in 200, exactly the uses
 *   it has (EXHAUSTED);
 * - after them, a new program ("scale-new", the last program and the last
 *   code ids) with 50 codes: 2 SUSPENDED, 1 INACTIVE, 2 EXPIRED, no EXHAUSTED.
 *
 * The loaded rows log no events (their triggers are disabled during the load);
 * the statistics' rollups are filled from them in one statement (ROLLUPS).
 * The earnings totals' triggers (sql/0014) stay on: each chunk adds its
 * totals in one INSERT … GROUP BY of the statement's rows.
 */
import pg from "pg";

export type ScaleSizes = { codes: number; conversions: number };
export type LoadReport = {
  seconds: number;
  steps: Record<string, number>;
  heavyReferrers: { userId: string; conversions: number }[];
  /** The loaded programs' keys, largest first. */
  programKeys: string[];
  /** The program made after the bulk, with NEW_PROGRAM_CODES codes. */
  newProgram: { key: string; codes: number };
};

const CHUNK = 1_000_000;
const WHALE_SHARES = [0.08, 0.04, 0.02, 0.01, 0.005];
const INFLUENCERS = 1000;
const INFLUENCER_SHARE = 0.045;
const NEW_PROGRAM_CODES = 50;

/** The loaded programs: bench program first (index 1), then 12 of their own. */
const PROGRAMS = [
  { share: 50 }, // the bench program (FIXED 100 USD, created through the API)
  { share: 15, kind: "FIXED", amount: 1500, bp: 0, currency: "USD", hold: 14, prefix: "SPR" },
  { share: 8, kind: "PERCENTAGE", amount: 0, bp: 500, currency: "EUR", hold: 30, prefix: "EU" },
  { share: 7, kind: "FIXED", amount: 1000, bp: 0, currency: "GBP", hold: 7, prefix: "" },
  { share: 5, kind: "PERCENTAGE", amount: 0, bp: 1000, currency: "USD", hold: 0, prefix: "FRIEND" },
  { share: 4, kind: "FIXED", amount: 2500, bp: 0, currency: "USD", hold: 14, prefix: "" },
  { share: 3, kind: "FIXED", amount: 500, bp: 0, currency: "EUR", hold: 0, prefix: "B2B" },
  { share: 2, kind: "PERCENTAGE", amount: 0, bp: 250, currency: "USD", hold: 30, prefix: "VIP" },
  { share: 1, kind: "FIXED", amount: 2000, bp: 0, currency: "GBP", hold: 14, prefix: "UK" },
  { share: 2, kind: "FIXED", amount: 750, bp: 0, currency: "USD", hold: 0, prefix: "APP" },
  { share: 1, kind: "PERCENTAGE", amount: 0, bp: 1500, currency: "EUR", hold: 7, prefix: "" },
  { share: 1, kind: "FIXED", amount: 3000, bp: 0, currency: "USD", hold: 30, prefix: "PARTNER" },
  { share: 1, kind: "FIXED", amount: 100, bp: 0, currency: "USD", hold: 0, prefix: "TEST" },
] as const;

/**
 * Formulas over a regular code's number n (0-based) and a regular
 * conversion's number i, as inlinable SQL functions in pg_temp: users own
 * 1, 2, 3, 4, 5 codes in turn (15 codes per 5 users), and converting codes
 * (n % 10 < 3) are numbered j, conversion i landing on converting code i % r.
 */
const FUNCTIONS = `
CREATE FUNCTION pg_temp.user_of(n bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT (n / 15) * 5 + CASE WHEN n % 15 < 1 THEN 0 WHEN n % 15 < 3 THEN 1 WHEN n % 15 < 6 THEN 2 WHEN n % 15 < 10 THEN 3 ELSE 4 END $$;
CREATE FUNCTION pg_temp.slot_of(n bigint) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
  SELECT (n % 15 - CASE WHEN n % 15 < 1 THEN 0 WHEN n % 15 < 3 THEN 1 WHEN n % 15 < 6 THEN 3 WHEN n % 15 < 10 THEN 6 ELSE 10 END + 1)::integer $$;
CREATE FUNCTION pg_temp.program_of(n bigint, shares integer[]) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
  SELECT shares[1 + (pg_temp.user_of(n) * 37) % 100] $$;
CREATE FUNCTION pg_temp.converting_number(n bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN n % 10 < 3 THEN 3 * (n / 10) + n % 10 END $$;
CREATE FUNCTION pg_temp.code_of_conversion(i bigint, r bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
  SELECT 10 * ((i % r) / 3) + (i % r) % 3 $$;
`;

/**
 * A conversion's columns from `source`'s (i: its unique number, k: its program's
 * index, program_id, code_id, referrer, referred, txn, converted_at); $1–$6 are
 * the programs' ids, kinds, amounts, basis points, currencies and hold days.
 */
const conversionSelect = (source: string) => `
  SELECT x.program_id, x.code_id, x.referrer, x.referred, x.txn, x.amount,
    CASE WHEN kinds[x.k] = 'FIXED' THEN amounts[x.k] ELSE x.amount * bps[x.k] / 10000 END,
    currencies[x.k], x.converted_at, x.converted_at + make_interval(days => holds[x.k]),
    true, true, NULL::integer,
    x.status,
    CASE WHEN x.status = 'PAID' THEN 'po-' || (x.i / 1000) END,
    CASE WHEN x.status = 'PAID' OR x.clawback THEN x.converted_at + make_interval(days => holds[x.k] + 1) END,
    CASE WHEN x.status = 'FAILED' THEN x.converted_at + make_interval(days => holds[x.k] + 1) END,
    CASE WHEN x.status = 'FAILED' THEN 'payee account closed' END,
    CASE WHEN x.status = 'REVERSED' THEN x.converted_at + make_interval(days => holds[x.k] + 12) END,
    CASE WHEN x.status = 'REVERSED' THEN CASE WHEN x.clawback THEN 'chargeback' ELSE 'refund' END END,
    x.clawback, '{}'::jsonb, x.converted_at, x.converted_at
  FROM (
    SELECT s.*, CASE
        WHEN s.converted_at > now() - interval '30 days' THEN 'PENDING'
        WHEN s.i % 100 < 85 THEN 'PAID'
        WHEN s.i % 100 < 88 THEN 'REVERSED'
        WHEN s.i % 100 < 90 THEN 'FAILED'
        ELSE 'PENDING' END AS status,
      s.converted_at <= now() - interval '30 days' AND s.i % 100 = 85 AS clawback,
      10000 * (1 + (s.i * 7919) % 50) AS amount
    FROM (${source}) s
  ) x, (SELECT $2::text[] AS kinds, $3::bigint[] AS amounts, $4::integer[] AS bps, $5::text[] AS currencies,
          $6::integer[] AS holds) p
`;

const CONVERSION_COLUMNS = `(program_id, code_id, referrer_user_id, referred_user_id, transaction_id, transaction_amount_minor,
  amount_earned_minor, currency, converted_at, payable_at, first_conversion, holds_use, reward_slot, payout_status,
  payout_reference, paid_at, failed_at, failure_reason, reversed_at, reversal_reason, clawback, metadata, created_at, updated_at)`;

/** converted_at of conversion number i: spread over the last five years, in no particular order. */
const convertedAt = (i: string) => `now() - make_interval(secs => ((${i}) * 2654435761 % 157680000000000) / 1e6::float8)`;

/**
 * The statistics' rollups of the loaded rows (codes from id $1, and their
 * conversions), in one statement: what the service's fold (src/stats/
 * repository.ts) ends at once it has folded each row's history (created, then
 * PAID, FAILED or REVERSED), the figures test/stats.test.ts checks it against.
 * Per UTC day: codes on their creation day, conversions on converted_at's.
 * Adds to rows the fold already holds (the seed's, folded from its events).
 */
const ROLLUPS = `
WITH codes AS (
  SELECT program_id, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS issued, count(*) FILTER (WHERE status = 'ACTIVE') AS active
  FROM referral_codes WHERE id >= $1 GROUP BY 1, 2
), conversions AS MATERIALIZED (
  SELECT program_id, referrer_user_id, (converted_at AT TIME ZONE 'UTC')::date AS day, count(*) AS conversions,
    count(*) FILTER (WHERE first_conversion) AS referred_users, count(*) FILTER (WHERE payout_status = 'REVERSED') AS conversions_reversed,
    sum(amount_earned_minor) AS granted,
    COALESCE(sum(amount_earned_minor) FILTER (WHERE payout_status = 'REVERSED'), 0) AS reversed,
    COALESCE(sum(amount_earned_minor) FILTER (WHERE payout_status = 'PAID'), 0) AS paid,
    sum(referee_reward_minor) AS referee_granted
  FROM referral_trackings WHERE code_id >= $1 GROUP BY 1, 2, 3
), program_days AS (
  SELECT program_id, day, sum(issued) AS issued, sum(active) AS active, sum(conversions) AS conversions, sum(referred_users) AS referred_users,
    sum(granted) AS granted, sum(reversed) AS reversed, sum(paid) AS paid, sum(referee_granted) AS referee_granted
  FROM (
    SELECT program_id, day, issued, active, 0 AS conversions, 0 AS referred_users, 0 AS granted, 0 AS reversed, 0 AS paid, 0 AS referee_granted FROM codes
    UNION ALL
    SELECT program_id, day, 0, 0, conversions, referred_users, granted, reversed, paid, referee_granted FROM conversions
  ) d GROUP BY 1, 2
), programs_filled AS (
  INSERT INTO program_stats_daily AS s (program_id, day, codes_issued, codes_active, conversions, referred_users,
    referrer_granted_minor, referrer_reversed_minor, referrer_paid_minor, referee_granted_minor)
  SELECT * FROM program_days
  ON CONFLICT (program_id, day) DO UPDATE SET
    codes_issued = s.codes_issued + EXCLUDED.codes_issued, codes_active = s.codes_active + EXCLUDED.codes_active,
    conversions = s.conversions + EXCLUDED.conversions, referred_users = s.referred_users + EXCLUDED.referred_users,
    referrer_granted_minor = s.referrer_granted_minor + EXCLUDED.referrer_granted_minor,
    referrer_reversed_minor = s.referrer_reversed_minor + EXCLUDED.referrer_reversed_minor,
    referrer_paid_minor = s.referrer_paid_minor + EXCLUDED.referrer_paid_minor,
    referee_granted_minor = s.referee_granted_minor + EXCLUDED.referee_granted_minor
), standing AS MATERIALIZED (
  -- A referrer's standing (not reversed) conversions and rewards, and what of them is PAID.
  SELECT program_id, referrer_user_id, day, conversions - conversions_reversed AS conversions, granted - reversed AS earned, paid FROM conversions
), referrer_days_filled AS (
  INSERT INTO referrer_stats_daily AS s (program_id, referrer_user_id, day, conversions, earned_minor, paid_minor)
  SELECT * FROM standing
  ON CONFLICT (program_id, day, referrer_user_id) DO UPDATE SET
    conversions = s.conversions + EXCLUDED.conversions, earned_minor = s.earned_minor + EXCLUDED.earned_minor, paid_minor = s.paid_minor + EXCLUDED.paid_minor
)
INSERT INTO referrer_stats AS s (program_id, referrer_user_id, conversions, earned_minor, paid_minor)
SELECT program_id, referrer_user_id, sum(conversions), sum(earned), sum(paid) FROM standing GROUP BY 1, 2
ON CONFLICT (program_id, referrer_user_id) DO UPDATE SET
  conversions = s.conversions + EXCLUDED.conversions, earned_minor = s.earned_minor + EXCLUDED.earned_minor, paid_minor = s.paid_minor + EXCLUDED.paid_minor
`;

/**
 * Secondary indexes, unique and foreign-key constraints of the loaded tables,
 * as the catalog defines them (primary keys stay): dropped before the load and
 * created again after it, as bulk loads do, since one sorted build of an index
 * is far cheaper than ten million scattered insertions into it (and one join
 * checks a foreign key faster than a trigger per row).
 */
async function setAsideIndexes(client: pg.Client): Promise<string[]> {
  const tables = ["referral_codes", "referral_trackings"];
  const { rows: constraints } = await client.query<{ table: string; name: string; definition: string }>(
    `SELECT conrelid::regclass::text AS table, conname AS name, pg_get_constraintdef(oid) AS definition
     FROM pg_constraint WHERE conrelid = ANY($1::regclass[]) AND contype IN ('u', 'f') ORDER BY contype DESC, conname`,
    [tables],
  );
  const { rows: indexes } = await client.query<{ name: string; definition: string }>(
    `SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
     FROM pg_index i WHERE i.indrelid = ANY($1::regclass[]) AND NOT i.indisprimary
       AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1`,
    [tables],
  );
  for (const c of [...constraints].reverse()) await client.query(`ALTER TABLE ${c.table} DROP CONSTRAINT ${c.name}`);
  for (const index of indexes) await client.query(`DROP INDEX ${index.name}`);
  return [
    ...indexes.map((index) => index.definition),
    ...constraints.map((c) => `ALTER TABLE ${c.table} ADD CONSTRAINT ${c.name} ${c.definition}`),
  ];
}

export async function loadScale(
  databaseUrl: string,
  benchProgramId: bigint,
  sizes: ScaleSizes,
  progress: (line: string) => void,
): Promise<LoadReport> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const steps: Record<string, number> = {};
  const started = performance.now();
  const step = async (name: string, work: () => Promise<unknown>) => {
    const at = performance.now();
    await work();
    steps[name] = (steps[name] ?? 0) + (performance.now() - at) / 1000;
  };
  try {
    await client.query("SET statement_timeout = 0");
    await client.query("SET maintenance_work_mem = '512MB'");
    await client.query(FUNCTIONS);
    let restore: string[] = [];
    await step("drop indexes", async () => {
      restore = await setAsideIndexes(client);
    });
    // No events for the loaded rows (20 million of them would take the
    // service's fold ~50 minutes here, at ~7,000 events/s): the statistics'
    // rollups are filled from the rows at the end instead (ROLLUPS).
    for (const table of ["referral_codes", "referral_trackings"]) await client.query(`ALTER TABLE ${table} DISABLE TRIGGER referral_events_created`);

    // Programs: the bench program, then 12 loaded ones (reversal_frees_use off:
    // a reversed conversion keeps its use, so uses_count stays the plain count).
    const programIds: bigint[] = [benchProgramId];
    const programKeys: string[] = [];
    await step("programs", async () => {
      for (const [index, p] of PROGRAMS.entries()) {
        if (!("kind" in p)) continue;
        const key = `scale-${String(index).padStart(2, "0")}`;
        const { rows } = await client.query<{ id: string }>(
          `INSERT INTO referral_programs (program_key, name, reward_kind, reward_amount_minor, reward_basis_points, reward_currency,
             hold_days, code_prefix, code_length, reversal_frees_use, created_at)
           VALUES ($1, $1, $2, $3, $4, $5, $6, $7, 12, false, now() - interval '5 years') RETURNING id`,
          [key, p.kind, p.amount, p.bp, p.currency, p.hold, p.prefix],
        );
        programIds.push(BigInt(rows[0]!.id));
        programKeys.push(key);
      }
    });
    const { rows: programRows } = await client.query<{ id: string; reward_kind: string; reward_amount_minor: string; reward_basis_points: number; reward_currency: string; hold_days: number; code_prefix: string }>(
      "SELECT id, reward_kind, reward_amount_minor, reward_basis_points, reward_currency, hold_days, code_prefix FROM referral_programs WHERE id = ANY($1::bigint[])",
      [programIds.map(String)],
    );
    const byId = new Map(programRows.map((row) => [row.id, row]));
    const programs = programIds.map((id) => byId.get(String(id))!);
    const programParams = [
      programs.map((p) => p.id),
      programs.map((p) => p.reward_kind),
      programs.map((p) => p.reward_amount_minor),
      programs.map((p) => p.reward_basis_points),
      programs.map((p) => p.reward_currency),
      programs.map((p) => p.hold_days),
    ];
    const shares = PROGRAMS.flatMap((p, index) => Array.from({ length: p.share }, () => index + 1));
    const prefixes = programs.map((p) => (p.code_prefix === "" ? "" : `${p.code_prefix}-`));

    // Sizes: heavy referrers' conversions first, the rest over the regular codes.
    const heavy = [
      ...WHALE_SHARES.map((share, w) => ({ userId: `whale-${w + 1}`, conversions: Math.floor(sizes.conversions * share) })),
      ...Array.from({ length: INFLUENCERS }, (_, k) => ({
        userId: `influencer-${k + 1}`,
        conversions: Math.floor((sizes.conversions * INFLUENCER_SHARE) / INFLUENCERS),
      })),
    ];
    const regularCodes = sizes.codes - heavy.length - NEW_PROGRAM_CODES;
    const regularConversions = sizes.conversions - heavy.reduce((sum, h) => sum + h.conversions, 0);
    const converting = Math.floor(regularCodes / 10) * 3 + Math.min(3, regularCodes % 10);
    if (regularCodes <= 0 || converting <= 0) throw new Error(`SCALE_CODES must be above ${heavy.length + NEW_PROGRAM_CODES}`);

    // Code ids are given (base + n), so conversions know their code without a lookup.
    const { rows: baseRows } = await client.query<{ base: string }>("SELECT COALESCE(max(id), 0) + 1000 AS base FROM referral_codes");
    const base = BigInt(baseRows[0]!.base);

    // Regular codes, a chunk of n per statement.
    for (let lo = 0; lo < regularCodes; lo += CHUNK) {
      const hi = Math.min(regularCodes, lo + CHUNK) - 1;
      await step("codes", () =>
        client.query(
          `INSERT INTO referral_codes (id, code, user_id, program_id, status, uses_count, max_uses, exhausted, expires_at, slot, metadata, created_at, updated_at)
           OVERRIDING SYSTEM VALUE
           SELECT $1::bigint + n,
             prefixes[k] || lpad(upper(to_hex((n * 2654435761 + 12345) % 281474976710656)), 12, '0'),
             'user-' || pg_temp.user_of(n), ids[k],
             CASE WHEN n % 50 = 7 THEN 'INACTIVE' WHEN n % 100 = 13 THEN 'SUSPENDED' ELSE 'ACTIVE' END,
             uses, max_uses, max_uses IS NOT NULL AND uses >= max_uses,
             CASE WHEN n % 10 = 9 THEN created + interval '4 years' END,
             pg_temp.slot_of(n), '{}'::jsonb, created, created
           FROM (
             SELECT n, pg_temp.program_of(n, $4::integer[]) AS k,
               now() - interval '5 years' + make_interval(secs => n * (157680000.0 / $5::float8)) AS created,
               COALESCE(CASE WHEN pg_temp.converting_number(n) < $6::bigint
                 THEN (($6::bigint - 1 - pg_temp.converting_number(n)) / $7::bigint + 1)::integer END, 0) AS uses
             FROM generate_series($2::bigint, $3::bigint) AS n
           ) c, LATERAL (SELECT CASE WHEN n % 200 = 0 AND uses > 0 THEN uses WHEN n % 20 = 0 THEN 1000 END AS max_uses) m,
           (SELECT $8::text[] AS prefixes, $9::bigint[] AS ids) p`,
          [base, lo, hi, shares, regularCodes, regularConversions, converting, prefixes, programParams[0]],
        ),
      );
      progress(`codes ${(hi + 1).toLocaleString("en-US")} / ${sizes.codes.toLocaleString("en-US")}`);
    }
    // Heavy referrers: one code each in the bench program, ids after the regular ones.
    await step("codes", () =>
      client.query(
        `INSERT INTO referral_codes (id, code, user_id, program_id, uses_count, vanity, slot, created_at, updated_at)
         OVERRIDING SYSTEM VALUE
         SELECT $1::bigint + $2::bigint + h.ord, upper(h.user_id), h.user_id, $3::bigint, h.conversions, true, 1,
           now() - interval '5 years', now() - interval '5 years'
         FROM unnest($4::text[], $5::integer[]) WITH ORDINALITY AS h(user_id, conversions, ord)`,
        [base, regularCodes, benchProgramId, heavy.map((h) => h.userId), heavy.map((h) => h.conversions)],
      ),
    );
    // The new program, made after the bulk: its codes have the last ids.
    const newProgram = { key: "scale-new", codes: NEW_PROGRAM_CODES };
    await step("codes", async () => {
      const { rows } = await client.query<{ id: string }>(
        `INSERT INTO referral_programs (program_key, name, reward_kind, reward_amount_minor, reward_currency, code_length, reversal_frees_use)
         VALUES ($1, $1, 'FIXED', 500, 'USD', 12, false) RETURNING id`,
        [newProgram.key],
      );
      await client.query(
        `INSERT INTO referral_codes (id, code, user_id, program_id, status, expires_at, slot, created_at, updated_at)
         OVERRIDING SYSTEM VALUE
         SELECT $1::bigint + k, 'NEWCOMER' || k, 'newcomer-' || k, $2::bigint,
           CASE WHEN k IN (7, 31) THEN 'SUSPENDED' WHEN k = 13 THEN 'INACTIVE' ELSE 'ACTIVE' END,
           CASE WHEN k IN (5, 25) THEN now() - interval '1 day' WHEN k % 10 = 9 THEN now() + interval '1 year' END,
           1, now(), now()
         FROM generate_series(1, $3::integer) AS k`,
        [base + BigInt(regularCodes + heavy.length), rows[0]!.id, newProgram.codes],
      );
    });
    await step("codes", () =>
      client.query("SELECT setval(pg_get_serial_sequence('referral_codes', 'id'), (SELECT max(id) FROM referral_codes))"),
    );

    // Regular conversions, a chunk of i per statement.
    for (let lo = 0; lo < regularConversions; lo += CHUNK) {
      const hi = Math.min(regularConversions, lo + CHUNK) - 1;
      await step("conversions", () =>
        client.query(
          `INSERT INTO referral_trackings ${CONVERSION_COLUMNS}
           ${conversionSelect(`
             SELECT i, k, ids[k] AS program_id, $7::bigint + n AS code_id, 'user-' || pg_temp.user_of(n) AS referrer,
               'ref-' || i AS referred, 'txn-' || i AS txn, ${convertedAt("i")} AS converted_at
             FROM (SELECT i, n, pg_temp.program_of(n, $8::integer[]) AS k
                   FROM generate_series($9::bigint, $10::bigint) AS i, pg_temp.code_of_conversion(i, $11::bigint) AS n) c,
                  (SELECT $1::bigint[] AS ids) q`)}`,
          [...programParams, base, shares, lo, hi, converting],
        ),
      );
      progress(`conversions ${(hi + 1).toLocaleString("en-US")} / ${sizes.conversions.toLocaleString("en-US")}`);
    }
    // Heavy referrers' conversions, numbered after the regular ones.
    await step("conversions", () =>
      client.query(
        `INSERT INTO referral_trackings ${CONVERSION_COLUMNS}
         ${conversionSelect(`
           SELECT $8::bigint + h.first + m AS i, 1 AS k, ($1::bigint[])[1] AS program_id, $7::bigint + $9::bigint + h.ord AS code_id,
             h.user_id AS referrer, 'ref-' || ($8::bigint + h.first + m) AS referred, 'txn-' || ($8::bigint + h.first + m) AS txn,
             ${convertedAt("$8::bigint + h.first + m")} AS converted_at
           FROM unnest($10::text[], $11::integer[], $12::bigint[]) WITH ORDINALITY AS h(user_id, conversions, first, ord),
             generate_series(0, h.conversions - 1) AS m`)}`,
        [
          ...programParams,
          base,
          regularConversions,
          regularCodes,
          heavy.map((h) => h.userId),
          heavy.map((h) => h.conversions),
          heavy.map((_, index) => heavy.slice(0, index).reduce((sum, h) => sum + h.conversions, 0)),
        ],
      ),
    );
    progress(`conversions ${sizes.conversions.toLocaleString("en-US")} / ${sizes.conversions.toLocaleString("en-US")}`);

    for (const statement of restore) {
      await step("indexes and constraints", () => client.query(statement));
      progress(statement.replace(/ USING btree| ON public\./g, (m) => (m === " USING btree" ? "" : " ON ")).slice(0, 100));
    }

    for (const table of ["referral_codes", "referral_trackings"]) await client.query(`ALTER TABLE ${table} ENABLE TRIGGER referral_events_created`);
    await step("statistics rollups", () => client.query(ROLLUPS, [base]));
    progress("statistics rollups filled");

    // As autovacuum would after a bulk insert: visibility map and statistics.
    await step("vacuum analyze", async () => {
      await client.query("VACUUM (ANALYZE) referral_programs, referral_codes, referral_trackings, program_stats_daily, referrer_stats_daily, referrer_stats, referrer_earnings");
    });
    progress("vacuumed and analyzed");
    return { seconds: (performance.now() - started) / 1000, steps, heavyReferrers: heavy.slice(0, WHALE_SHARES.length), programKeys, newProgram };
  } finally {
    // Also when the load failed (a BENCH_DATABASE_URL database outlives the run).
    for (const table of ["referral_codes", "referral_trackings"]) {
      await client.query(`ALTER TABLE ${table} ENABLE TRIGGER referral_events_created`).catch(() => {});
    }
    await client.end();
  }
}
