-- The insurance side: employers and employments, suspensions, allocations, cardholder
-- credentials and sessions, the audit trail, and card replacement.

-- Employers, by unified social credit code (GB 32100-2015; check character in code).
CREATE TABLE employers (
    employer_id  char(18) PRIMARY KEY CHECK (employer_id ~ '^[0-9A-HJ-NPQRTUWXY]{18}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- An employee of an employer, or a flexibly employed person (no employer) who
-- registered themselves. Registration more than 30 days after hiring is late (art. 58).
CREATE TABLE employments (
    employment_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ssn                char(18) NOT NULL REFERENCES people,
    employer_id        char(18) REFERENCES employers,
    kind               text NOT NULL CHECK (kind IN ('employee', 'flexible')),
    hired_on           date NOT NULL,
    registered_on      date NOT NULL,
    late_registration  boolean NOT NULL,
    ended_on           date,
    registered_by      text NOT NULL CHECK (registered_by IN ('operator', 'cardholder')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'flexible') = (employer_id IS NULL)),
    CHECK (late_registration = (kind = 'employee' AND registered_on - hired_on > 30)),
    CHECK (ended_on IS NULL OR ended_on >= hired_on)
);
-- One open employment per person and employer (and one open flexible registration).
CREATE UNIQUE INDEX employments_one_open_idx
    ON employments (ssn, coalesce(employer_id, '-')) WHERE ended_on IS NULL;
CREATE INDEX employments_employer_idx ON employments (employer_id, hired_on);
CREATE INDEX employments_late_idx ON employments (registered_on) WHERE late_registration;

-- A suspension of insurance from a month on (declared online or at a counter), until an
-- operator records its resumption.
CREATE TABLE suspensions (
    suspension_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ssn            char(18) NOT NULL REFERENCES people,
    from_month     date NOT NULL CHECK (extract(day FROM from_month) = 1),
    resumed_from   date CHECK (extract(day FROM resumed_from) = 1 AND resumed_from > from_month),
    declared_by    text NOT NULL CHECK (declared_by IN ('cardholder', 'operator')),
    declared_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX suspensions_one_open_idx ON suspensions (ssn) WHERE resumed_from IS NULL;
CREATE INDEX suspensions_ssn_idx ON suspensions (ssn, from_month);

-- A suspension stops contributions: the application refuses them first (409); this is
-- the last line of defence.
CREATE FUNCTION contributions_not_suspended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM suspensions s
               WHERE s.ssn = NEW.ssn AND s.from_month <= NEW.month
                 AND (s.resumed_from IS NULL OR NEW.month < s.resumed_from)) THEN
        RAISE EXCEPTION 'contribution for a suspended month'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'contribution_not_suspended';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER contributions_suspension BEFORE INSERT OR UPDATE ON contributions
    FOR EACH ROW EXECUTE FUNCTION contributions_not_suspended();

-- The allocation run and the payment notices read a month across everyone.
CREATE INDEX contributions_month_idx ON contributions (month, ssn);

-- One allocation per account and month: the idempotency key of the allocation run. The
-- amount is journaled as an 'allocation' line with reference 'allocation YYYY-MM'.
CREATE TABLE allocations (
    account_id       bigint NOT NULL REFERENCES individual_accounts,
    month            date NOT NULL CHECK (extract(day FROM month) = 1),
    ssn              char(18) NOT NULL,
    employer_part    bigint NOT NULL CHECK (employer_part >= 0),
    individual_part  bigint NOT NULL CHECK (individual_part >= 0),
    amount           bigint NOT NULL
                     CHECK (amount >= individual_part AND amount <= employer_part + individual_part),
    allocated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, month),
    FOREIGN KEY (ssn, month) REFERENCES contributions (ssn, month)
);
CREATE INDEX allocations_month_idx ON allocations (month, account_id);

-- Cardholder login. The first password is derived from the card and must be changed;
-- failed_attempts counts consecutive failures (an attempt is counted before its hash
-- is checked, so parallel guesses cannot exceed the limit).
CREATE TABLE cardholder_credentials (
    ssn              char(18) PRIMARY KEY REFERENCES people,
    password_hash    text NOT NULL,
    must_change      boolean NOT NULL DEFAULT true,
    failed_attempts  smallint NOT NULL DEFAULT 0 CHECK (failed_attempts BETWEEN 0 AND 1000),
    locked_until     timestamptz,
    changed_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Sessions are rows, so every gateway process behind the load balancer knows them. Only
-- the SHA-256 of the bearer token is stored; the token itself is returned once.
CREATE TABLE cardholder_sessions (
    token_hash                bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    ssn                       char(18) NOT NULL REFERENCES people,
    password_change_required  boolean NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now(),
    expires_at                timestamptz NOT NULL,
    revoked_at                timestamptz,
    remote_addr               text
);
CREATE INDEX cardholder_sessions_ssn_idx ON cardholder_sessions (ssn);

-- A replacement card points back at the card it replaced.
ALTER TABLE cards ADD COLUMN replaces_card_id bigint REFERENCES cards (card_id);

-- Who changed what, when and from where. Append-only; never a PIN, password, key or token
-- (the writer refuses secret-named detail fields).
CREATE TABLE audit_log (
    audit_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    actor_kind    text NOT NULL CHECK (actor_kind IN ('operator', 'cardholder', 'system')),
    actor_id      text NOT NULL CHECK (length(actor_id) BETWEEN 1 AND 64),
    remote_addr   text CHECK (length(remote_addr) <= 100),
    request_id    text CHECK (length(request_id) <= 64),
    action        text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    subject_kind  text NOT NULL CHECK (subject_kind IN
                      ('person', 'account', 'card', 'merchant', 'terminal', 'employer',
                       'employment', 'allocation')),
    subject_id    text NOT NULL CHECK (length(subject_id) BETWEEN 1 AND 64),
    details       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_subject_idx ON audit_log (subject_kind, subject_id, audit_id);
CREATE INDEX audit_actor_idx ON audit_log (actor_kind, actor_id, audit_id);

CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();
