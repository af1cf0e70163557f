-- ListCodes by program is a prepared statement with a generic plan, which
-- prices "codes of this program" at 1 / n_distinct(program_id) of the table:
-- with a dozen programs, a twelfth of ten million codes. For one page in id
-- order the planner then walks the primary key and filters, expecting a match
-- every dozen rows; for a program of 50 codes created after millions of
-- others, that walk reads the whole table (1,060 buffers for 51 rows at 10 M).
-- Programs are few and their sizes differ by orders of magnitude, so the
-- average says nothing about a given one. Declaring program_id as if every
-- program held about 20 codes (5 % of the rows distinct) prices the
-- (program_id, id) index walk below the primary key's: that walk reads the
-- page's rows and no others, for a program of 50 codes as for one of 5 M.
-- The setting applies from the next ANALYZE, which follows here.
ALTER TABLE referral_codes ALTER COLUMN program_id SET (n_distinct = -0.05);
ANALYZE referral_codes;
