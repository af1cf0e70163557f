-- A program's name stays unique, through a partial unique index instead of a
-- constraint, so that renaming a program takes the same row lock as every
-- other UpdateProgram change. PostgreSQL locks a row FOR UPDATE for an UPDATE
-- that changes a column of a unique index that a foreign key could reference,
-- and FOR UPDATE waits for every key-share lock on the row: the foreign-key
-- checks of each conversion and code written to the program. New key-share
-- locks are granted ahead of a waiting FOR UPDATE, so a stream of conversions
-- held a rename off until it ended. A partial index cannot be referenced by a
-- foreign key, so its columns are not "key" columns (PostgreSQL's manual,
-- Explicit Locking, "Row-Level Locks") and a rename takes FOR NO KEY UPDATE,
-- which key-share locks do not block. The predicate always holds (name is NOT
-- NULL). The index keeps the constraint's name, which the service maps to
-- PROGRAM_KEY_TAKEN. Programs are few: the index is built in the migration's
-- transaction.
ALTER TABLE referral_programs DROP CONSTRAINT referral_programs_name_key;
CREATE UNIQUE INDEX referral_programs_name_key ON referral_programs (name) WHERE name IS NOT NULL;
