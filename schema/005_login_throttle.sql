-- Failed logins of ID numbers that have no credentials, counted and locked exactly like a
-- holder's (cardholder_credentials), so the lockout answers the same for registered and
-- unknown ID numbers. No reference to people: most of these numbers belong to nobody.
CREATE TABLE login_throttle (
    ssn              char(18) PRIMARY KEY,
    failed_attempts  smallint NOT NULL DEFAULT 0 CHECK (failed_attempts BETWEEN 0 AND 1000),
    locked_until     timestamptz,
    last_attempt_at  timestamptz NOT NULL DEFAULT now()
);
