-- Failed logins of operator names that have no enabled account, counted and locked exactly
-- like an operator's own (operators.failed_attempts), so that five wrong tries no longer
-- tell whether a name exists: an unknown name locks as a real one does. As login_throttle
-- (005, 010) for ID numbers; pruned the same way (store/lockout.py).
CREATE TABLE operator_login_throttle (
    username         text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,31}$'),
    failed_attempts  smallint NOT NULL DEFAULT 0 CHECK (failed_attempts BETWEEN 0 AND 1000),
    locked_until     timestamptz,
    last_attempt_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_login_throttle_last_attempt_idx
    ON operator_login_throttle (last_attempt_at);
