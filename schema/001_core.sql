-- Core tables of the gateway. Invariants live here as well as in code:
-- a bug in the application must not be able to store an invalid card number,
-- a negative balance or an edited journal line.

-- Luhn check digit (ISO/IEC 7812) over a string of digits.
CREATE FUNCTION luhn_valid(digits text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT digits ~ '^[0-9]+$' AND (
        SELECT sum(CASE WHEN (n - i) % 2 = 0
                        THEN (d * 2) / 10 + (d * 2) % 10
                        ELSE d END) % 10 = 0
        FROM (SELECT length(digits) AS n) AS len,
             LATERAL (SELECT i, substr(digits, i + 1, 1)::int AS d
                      FROM generate_series(0, length(digits) - 1) AS i) AS t
    )
$$;

-- GB 11643 citizen ID number: 17 digits and an ISO 7064 MOD 11-2 check character.
CREATE FUNCTION citizen_id_valid(id text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT id ~ '^[0-9]{17}[0-9X]$' AND substr(id, 18, 1) = substr('10X98765432', (
        SELECT sum(substr(id, i, 1)::int * ((2 ^ (18 - i))::int % 11)) % 11
        FROM generate_series(1, 17) AS i
    )::int + 1, 1)
$$;

CREATE TABLE people (
    ssn         char(18) PRIMARY KEY CHECK (citizen_id_valid(ssn)),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE individual_accounts (
    account_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ssn         char(18) NOT NULL UNIQUE REFERENCES people,
    balance     bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cards (
    card_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pan           varchar(19) NOT NULL UNIQUE
                  CHECK (pan ~ '^[0-9]{16,19}$' AND luhn_valid(pan)),
    account_id    bigint NOT NULL REFERENCES individual_accounts,
    expires_on    date NOT NULL,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'lost', 'replaced')),
    pin_hash      text NOT NULL,
    pin_failures  smallint NOT NULL DEFAULT 0 CHECK (pin_failures BETWEEN 0 AND 3),
    issued_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cards_account_idx ON cards (account_id);

CREATE TABLE merchants (
    merchant_id       varchar(15) PRIMARY KEY CHECK (merchant_id ~ '^[0-9A-Z]{15}$'),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind              text NOT NULL CHECK (kind IN ('pharmacy', 'hospital')),
    designated_from   date NOT NULL,
    designated_until  date NOT NULL,
    suspended         boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (designated_until >= designated_from)
);

-- Terminal keys are stored only wrapped (AES-GCM under POS_MASTER_KEY).
CREATE TABLE terminals (
    terminal_id      char(8) PRIMARY KEY CHECK (terminal_id ~ '^[0-9A-Z]{8}$'),
    merchant_id      varchar(15) NOT NULL REFERENCES merchants,
    mac_key_wrapped  bytea NOT NULL,
    pin_key_wrapped  bytea NOT NULL,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX terminals_merchant_idx ON terminals (merchant_id);

CREATE SEQUENCE rrn_seq MAXVALUE 999999999999;

-- Every terminal request that reached a business decision, approved or declined.
-- The primary key is the idempotency key (terminal, local date, STAN); the row is
-- the stored answer replayed to a retransmission.
CREATE TABLE transactions (
    terminal_id     char(8) NOT NULL REFERENCES terminals,
    local_date      date NOT NULL,
    stan            char(6) NOT NULL CHECK (stan ~ '^[0-9]{6}$'),
    request_hash    bytea NOT NULL,
    txn_type        text NOT NULL,
    transaction_id  uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    rrn             char(12) NOT NULL UNIQUE DEFAULT lpad(nextval('rrn_seq')::text, 12, '0'),
    merchant_id     varchar(15) NOT NULL REFERENCES merchants,
    card_id         bigint REFERENCES cards,
    account_id      bigint REFERENCES individual_accounts,
    amount          bigint CHECK (amount >= 0),
    balance         bigint CHECK (balance >= 0),
    response_code   char(2) NOT NULL CHECK (response_code ~ '^[0-9]{2}$'),
    auth_code       char(6),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (terminal_id, local_date, stan),
    CHECK ((response_code = '00') = (auth_code IS NOT NULL))
);
CREATE INDEX transactions_account_idx ON transactions (account_id, created_at);

-- The append-only journal: an account's balance is the sum of its lines.
CREATE TABLE journal (
    entry_id        bigint GENERATED ALWAYS AS IDENTITY,
    account_id      bigint NOT NULL REFERENCES individual_accounts,
    kind            text NOT NULL
                    CHECK (kind IN ('allocation', 'adjustment', 'purchase', 'refund', 'reversal')),
    amount          bigint NOT NULL CHECK (amount <> 0),
    balance_after   bigint NOT NULL CHECK (balance_after >= 0),
    transaction_id  uuid REFERENCES transactions (transaction_id),
    terminal_id     char(8),
    merchant_id     varchar(15),
    reference       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entry_id),
    CHECK ((kind = 'purchase') = (amount < 0) OR kind IN ('adjustment', 'reversal'))
);
CREATE INDEX journal_transaction_idx ON journal (transaction_id) WHERE transaction_id IS NOT NULL;

CREATE FUNCTION journal_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal is append-only (% refused)', TG_OP;
END
$$;
CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();

-- Contributions paid per person and month (first day of the month).
CREATE TABLE contributions (
    ssn              char(18) NOT NULL REFERENCES people,
    month            date NOT NULL CHECK (extract(day FROM month) = 1),
    employer_part    bigint NOT NULL DEFAULT 0 CHECK (employer_part >= 0),
    individual_part  bigint NOT NULL DEFAULT 0 CHECK (individual_part >= 0),
    paid_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ssn, month)
);
