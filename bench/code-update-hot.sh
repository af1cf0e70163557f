#!/usr/bin/env bash
# The conversion's bare update of a code (uses_count + 1) with pgbench, in three
# variants alternating: the `exhausted` column with its trigger and index (as
# migrated), an EXHAUSTED index whose predicate names uses_count (no HOT
# updates), and neither. Prints updates/s and the share of HOT updates.
# See docs/performance.md, "ListCodes by status". Needs psql and pgbench, and
# a PostgreSQL where it may create and drop a database:
#   BENCH_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres bash bench/code-update-hot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=code_update_hot_$$
URL=${ADMIN%/*}/$DB
psql -q "$ADMIN" -c "CREATE DATABASE $DB"
trap 'psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB" >/dev/null' EXIT
npx node -e "import('./src/db/migrate.ts').then((m) => m.runMigrations('$URL')).then(() => process.exit(0))" >/dev/null
psql -q -v ON_ERROR_STOP=1 "$URL" <<SQL
INSERT INTO referral_programs (program_key, name, reward_kind, reward_amount_minor, reward_currency) VALUES ('hot', 'hot', 'FIXED', 100, 'USD');
INSERT INTO referral_codes (code, user_id, program_id, slot, max_uses)
  SELECT 'HOT' || lpad(i::text, 7, '0'), 'u' || i, (SELECT id FROM referral_programs), 1, CASE WHEN i % 2 = 0 THEN 1000000 END
  FROM generate_series(1, 200000) AS i;
VACUUM ANALYZE referral_codes;
SQL
SCRIPT=$(mktemp)
cat > "$SCRIPT" <<'S'
\set id random(1, 200000)
UPDATE referral_codes SET uses_count = uses_count + 1, updated_at = now() WHERE id = :id AND (max_uses IS NULL OR uses_count < max_uses);
S
run() {
  psql -qAt "$URL" -c "SELECT pg_stat_reset_single_table_counters('referral_codes'::regclass)" >/dev/null
  sleep 1
  local tps
  tps=$(pgbench -n -M prepared -c 2 -j 1 -T "${BENCH_SECONDS:-15}" -f "$SCRIPT" "$URL" 2>/dev/null | grep -oP 'tps = \K[\d.]+')
  sleep 1
  echo "$1: $(printf %.0f "$tps") updates/s, HOT $(psql -qAt "$URL" -c "SELECT round(100.0 * n_tup_hot_upd / greatest(n_tup_upd, 1), 1) FROM pg_stat_user_tables WHERE relname = 'referral_codes'") %"
}
OLD_INDEX="CREATE INDEX referral_codes_program_id_exhausted_idx ON referral_codes (program_id, id) WHERE status = 'ACTIVE' AND max_uses IS NOT NULL AND uses_count >= max_uses"
for _ in 1 2; do
  run "exhausted column, trigger and index (as migrated)"
  psql -q "$URL" -c "DROP INDEX referral_codes_program_id_exhausted_idx" -c "DROP TRIGGER referral_codes_exhausted ON referral_codes" \
    -c "ALTER TABLE referral_codes DROP CONSTRAINT referral_codes_exhausted_agrees" -c "$OLD_INDEX" -c "VACUUM referral_codes"
  run "index predicate on uses_count"
  psql -q "$URL" -c "DROP INDEX referral_codes_program_id_exhausted_idx" -c "VACUUM referral_codes"
  run "neither"
  psql -q "$URL" -c "CREATE TRIGGER referral_codes_exhausted BEFORE UPDATE OF uses_count, max_uses ON referral_codes FOR EACH ROW EXECUTE FUNCTION referral_codes_exhausted()" \
    -c "ALTER TABLE referral_codes ADD CONSTRAINT referral_codes_exhausted_agrees CHECK (exhausted = (max_uses IS NOT NULL AND uses_count >= max_uses))" \
    -c "CREATE INDEX referral_codes_program_id_exhausted_idx ON referral_codes (program_id, id) WHERE status = 'ACTIVE' AND exhausted" -c "VACUUM referral_codes"
done
rm -f "$SCRIPT"
