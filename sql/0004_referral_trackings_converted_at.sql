-- postgres-migrations disable-transaction
-- ListReferrals without a referrer, referred user or program filter pages
-- newest first by (converted_at DESC, id DESC), keyset after the last row.
-- No index began with converted_at, so every page was a scan of the whole
-- table and a top-N sort (npm run bench:scale: seconds per page at 10 million
-- conversions); with this index a page reads its rows and no others, at any
-- depth. CONCURRENTLY (hence outside a transaction) so that building it on a
-- large table does not block conversions; if a build fails, drop the INVALID
-- index it leaves before starting the service again.
CREATE INDEX CONCURRENTLY referral_trackings_converted_at_idx ON referral_trackings (converted_at DESC, id DESC);
