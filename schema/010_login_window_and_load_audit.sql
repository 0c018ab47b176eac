-- The lockout's failures have a window (store/lockout.py): a run of wrong passwords with
-- no attempt for the lockout interval is over, for registered logins as for ID numbers
-- without credentials, so a login_throttle row whose last attempt is that old says
-- nothing and is pruned (at the logins of unknown numbers, the only ones that add rows),
-- found through this index. NULL: no attempt counted since this migration.
ALTER TABLE cardholder_credentials ADD COLUMN last_attempt_at timestamptz;
ALTER TABLE operators ADD COLUMN last_attempt_at timestamptz;
CREATE INDEX login_throttle_last_attempt_idx ON login_throttle (last_attempt_at);

