-- The leaderboard over a range of days (ListTopReferrers with a time range)
-- must sum every referrer's days in the range before it knows the top ones:
-- tens of thousands of referrer-days for a month of a large program. This
-- migration makes that one pass over contiguous index pages and an in-memory
-- hash (measurements: docs/performance.md, Statistics).

-- The range is read from the primary key alone (an index-only scan). Its
-- leading columns (program_id, day) already select the range; it now also
-- carries the figures summed, so the heap, where a range's rows lie scattered
-- once updated, is not read. The primary key rather than a second index on
-- (program_id, day): the same reads, with one index less for every fold to
-- write and for vacuum to scan. The fold's ON CONFLICT (program_id, day,
-- referrer_user_id) still finds it: INCLUDE columns are no part of the key.
-- Rebuilding the key locks the table while it is built: folds and ranged
-- leaderboards wait, once (an index of this shape over 4.6 million rows, 10
-- million conversions' worth, took 6 s to build on the 2-core machine).
ALTER TABLE referrer_stats_daily
  DROP CONSTRAINT referrer_stats_daily_pkey,
  ADD CONSTRAINT referrer_stats_daily_pkey PRIMARY KEY (program_id, day, referrer_user_id) INCLUDE (conversions, earned_minor, paid_minor);

-- An index-only scan still visits the heap for rows on pages that the
-- visibility map does not mark all-visible, that is pages changed since the
-- table was last vacuumed: a recent range is exactly what the fold keeps
-- changing (new conversions, payouts becoming PAID). By default autovacuum
-- waits for changes to 20 % of the table (~900,000 rows at 10 million
-- conversions, months of folding), so a month's range would be read from the
-- heap too. Vacuumed every 10,000 changed or inserted rows instead (about a
-- day of the fold at 10 million conversions over 5 years), the range's pages
-- stay mostly all-visible; such a vacuum reads the pages changed since the
-- last one and, when they hold enough dead rows, the primary key once.
ALTER TABLE referrer_stats_daily SET (
  autovacuum_vacuum_threshold = 10000,
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 10000,
  autovacuum_vacuum_insert_scale_factor = 0
);

-- The sums, grouped by referrer in a hash. sum(bigint) keeps a 128-bit state
-- per group in memory of its own and returns numeric: for a month of a large
-- program it filled three times the memory, hashing took twice as long, and
-- with estimates from real values PostgreSQL chose to sort instead. Its state
-- is a plain bigint here, and it is as exact: int8pl raises "bigint out of
-- range" rather than wrapping. Like sum(), NULLs are skipped and no rows give
-- NULL (a strict function with no initial value).
CREATE AGGREGATE bigint_sum(bigint) (
  SFUNC = int8pl,
  STYPE = bigint,
  COMBINEFUNC = int8pl,
  PARALLEL = SAFE
);
