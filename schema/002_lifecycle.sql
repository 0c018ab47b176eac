-- Transaction lifecycle: refunds, reversals, batches.

-- State of an approved purchase that later requests change. Kept on the purchase's own
-- row so that a refund and a reversal racing for the same purchase serialize on that
-- one row (a conditional UPDATE, like the debit), and never on a per-merchant total.
ALTER TABLE transactions
    ADD COLUMN original_transaction_id uuid REFERENCES transactions (transaction_id),
    ADD COLUMN refunded_amount bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    ADD COLUMN reversed boolean NOT NULL DEFAULT false,
    ADD COLUMN batch_no integer NOT NULL DEFAULT 1 CHECK (batch_no > 0),
    ADD CONSTRAINT refunds_within_original CHECK (refunded_amount <= coalesce(amount, 0));

CREATE INDEX transactions_original_idx ON transactions (original_transaction_id)
    WHERE original_transaction_id IS NOT NULL;
CREATE INDEX transactions_batch_idx ON transactions (terminal_id, batch_no);
CREATE INDEX transactions_merchant_day_idx ON transactions (merchant_id, local_date);

ALTER TABLE terminals ADD COLUMN current_batch integer NOT NULL DEFAULT 1 CHECK (current_batch > 0);

-- Every transaction lands in its terminal's open batch. FOR KEY SHARE (which the
-- foreign key takes anyway) makes a batch close, which locks the terminal row FOR
-- UPDATE, wait for transactions in flight, and those wait for the close: no
-- transaction can fall between two batches.
CREATE FUNCTION transactions_assign_batch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT current_batch INTO NEW.batch_no
    FROM terminals WHERE terminal_id = NEW.terminal_id
    FOR KEY SHARE;
    RETURN NEW;
END
$$;
CREATE TRIGGER transactions_batch BEFORE INSERT ON transactions
    FOR EACH ROW EXECUTE FUNCTION transactions_assign_batch();

CREATE TABLE batches (
    terminal_id        char(8) NOT NULL REFERENCES terminals,
    batch_no           integer NOT NULL CHECK (batch_no > 0),
    purchases_count    integer NOT NULL,
    purchases_amount   bigint NOT NULL,
    refunds_count      integer NOT NULL,
    refunds_amount     bigint NOT NULL,
    terminal_figures   jsonb NOT NULL,
    request_hash       bytea NOT NULL,
    in_balance         boolean NOT NULL,
    closed_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (terminal_id, batch_no)
);

-- The ID check of 001 accepted impossible birth dates (19900230): the date part must be
-- a real day, as the application's own check demands.
CREATE OR REPLACE FUNCTION citizen_id_valid(id text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    -- CASE, not AND: make_date must only see a month and a year it can take.
    SELECT CASE
        WHEN id !~ '^[0-9]{17}[0-9X]$' THEN false
        WHEN substr(id, 7, 4)::int < 1 OR substr(id, 11, 2)::int NOT BETWEEN 1 AND 12 THEN false
        WHEN substr(id, 13, 2)::int NOT BETWEEN 1 AND extract(day FROM (
                 make_date(substr(id, 7, 4)::int, substr(id, 11, 2)::int, 1)
                 + interval '1 month - 1 day'))::int THEN false
        ELSE substr(id, 18, 1) = substr('10X98765432', (
                 SELECT sum(substr(id, i, 1)::int * ((2 ^ (18 - i))::int % 11)) % 11
                 FROM generate_series(1, 17) AS i
             )::int + 1, 1)
    END
$$;
