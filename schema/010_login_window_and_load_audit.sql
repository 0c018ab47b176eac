-- The lockout's failures have a window (store/lockout.py): a run of wrong passwords with
-- no attempt for the lockout interval is over, for registered logins as for ID numbers
-- without credentials, so a login_throttle row whose last attempt is that old says
-- nothing and is pruned (at the logins of unknown numbers, the only ones that add rows),
-- found through this index. NULL: no attempt counted since this migration.
ALTER TABLE cardholder_credentials ADD COLUMN last_attempt_at timestamptz;
ALTER TABLE operators ADD COLUMN last_attempt_at timestamptz;
CREATE INDEX login_throttle_last_attempt_idx ON login_throttle (last_attempt_at);

-- Loads of the §10 catalogue and policies are audited under subjects of their own (the
-- table loaded), not under the operator who loaded them. Widened from whatever the list
-- is when this runs, as in 008.
DO $$
DECLARE
    definition text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO definition FROM pg_constraint
    WHERE conrelid = 'audit_log'::regclass AND conname = 'audit_log_subject_kind_check';
    IF definition IS NOT NULL AND position('''catalogue''' IN definition) = 0 THEN
        ALTER TABLE audit_log DROP CONSTRAINT audit_log_subject_kind_check;
        EXECUTE 'ALTER TABLE audit_log ADD CONSTRAINT audit_log_subject_kind_check '
            || replace(definition, 'ARRAY[', 'ARRAY[''catalogue''::text, ''policy''::text, ');
    END IF;
END
$$;
