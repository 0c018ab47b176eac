-- Operator accounts of the office pages (DESIGN §11): named accounts with roles,
-- argon2id passwords (the PIN hasher: peppered), a login lockout, and sessions kept as
-- rows so every gateway process knows them. Web sessions of cardholders reuse
-- cardholder_sessions (003).

CREATE TABLE operators (
    username         text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,31}$'),
    password_hash    text NOT NULL,
    -- The password was issued (by `operator add` or an admin) and must be changed.
    must_change      boolean NOT NULL DEFAULT true,
    disabled         boolean NOT NULL DEFAULT false,
    failed_attempts  smallint NOT NULL DEFAULT 0 CHECK (failed_attempts BETWEEN 0 AND 1000),
    locked_until     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    changed_at       timestamptz
);

-- Roles are separate grants; an account may hold several.
CREATE TABLE operator_roles (
    username  text NOT NULL REFERENCES operators ON DELETE CASCADE,
    role      text NOT NULL CHECK (role IN ('counter', 'officer', 'admin')),
    PRIMARY KEY (username, role)
);

-- Only the SHA-256 of the session cookie is stored.
CREATE TABLE operator_sessions (
    token_hash   bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    username     text NOT NULL REFERENCES operators,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    remote_addr  text
);
CREATE INDEX operator_sessions_username_idx ON operator_sessions (username);

-- Operator accounts are audit subjects too. The subject list is widened from whatever it
-- is when this runs (other migrations may have widened it already), not rewritten.
DO $$
DECLARE
    definition text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO definition FROM pg_constraint
    WHERE conrelid = 'audit_log'::regclass AND conname = 'audit_log_subject_kind_check';
    IF definition IS NOT NULL AND position('''operator''' IN definition) = 0 THEN
        ALTER TABLE audit_log DROP CONSTRAINT audit_log_subject_kind_check;
        EXECUTE 'ALTER TABLE audit_log ADD CONSTRAINT audit_log_subject_kind_check '
            || replace(definition, 'ARRAY[', 'ARRAY[''operator''::text, ');
    END IF;
END
$$;
