-- Distribution keys (DESIGN §6): the schema as it must be to be distributed Citus-style
-- when one PostgreSQL is outgrown. pos_gateway/store/distribution.py declares each table's
-- placement (distributed by account_id, by terminal_id, by a lookup key; reference;
-- local) and tests/test_distribution_keys.py checks this catalogue against it:
--
--   * a distributed table has its key in its primary key and in every unique constraint;
--   * a foreign key between distributed tables carries the key on both sides (the two
--     rows live on one shard); a foreign key to a reference table is fine;
--   * a reference that crosses keys (journal -> transactions, transactions -> cards,
--     settlement_splits -> transactions, ...) is a plain column that verify-ledger checks
--     (distribution.LINKS), since no shard could check it as a foreign key;
--   * an RRN takes no global sequence: its leading digits are the node's number.
--
-- Uniqueness that no longer fits a key moves to a lookup table keyed by the unique value:
-- card_numbers (PAN -> account and card) and account_holders (ID number -> account), each
-- filled by a statement trigger on the table it indexes, so the writers stay as they are
-- and a COPY of many cards costs one INSERT ... SELECT.

-- --- The crossing foreign keys become checked links ---------------------------------------

ALTER TABLE journal DROP CONSTRAINT journal_transaction_id_fkey;
ALTER TABLE transactions
    DROP CONSTRAINT transactions_card_id_fkey,
    DROP CONSTRAINT transactions_account_id_fkey,
    DROP CONSTRAINT transactions_original_transaction_id_fkey;
ALTER TABLE settlement_splits
    DROP CONSTRAINT settlement_splits_transaction_id_fkey,
    DROP CONSTRAINT settlement_splits_undone_by_fkey,
    DROP CONSTRAINT settlement_splits_ssn_fkey;
ALTER TABLE settlement_lines DROP CONSTRAINT settlement_lines_transaction_id_fkey;
ALTER TABLE fund_journal
    DROP CONSTRAINT fund_journal_transaction_id_fkey,
    DROP CONSTRAINT fund_journal_purchase_id_fkey,
    DROP CONSTRAINT fund_journal_ssn_fkey;
ALTER TABLE allocations DROP CONSTRAINT allocations_ssn_month_fkey;
ALTER TABLE individual_accounts DROP CONSTRAINT individual_accounts_ssn_fkey;
ALTER TABLE fund_accumulators DROP CONSTRAINT fund_accumulators_ssn_fkey;
ALTER TABLE cards DROP CONSTRAINT cards_replaces_card_id_fkey;

-- --- Transactions: distributed by terminal_id ---------------------------------------------

-- transaction_id is a random UUID and an RRN is unique by construction (below); neither can
-- be a unique constraint without the terminal, and neither needs to be: they are looked up,
-- and verify-ledger reports an RRN given twice.
ALTER TABLE transactions
    DROP CONSTRAINT transactions_transaction_id_key,
    DROP CONSTRAINT transactions_rrn_key;
CREATE INDEX transactions_transaction_id_idx ON transactions (transaction_id);
CREATE INDEX transactions_rrn_idx ON transactions (rrn);

-- The RRN: 12 digits, the first two the node's number (00-99), the other ten a sequence of
-- that node alone. The node's number is the sequence's range (node n counts from
-- n * 10^10 + 1 to n * 10^10 + 9999999999, no cycle), so RRNs of two nodes cannot collide
-- and a node that has used up its range fails (96) rather than repeat one: it is then given
-- an unused number (set_rrn_node). This node is 00 and continues where rrn_seq stopped, so
-- every RRN given so far (000000000001 on) stays valid and none is given again.
DO $$
BEGIN
    IF (SELECT last_value FROM rrn_seq) > 9999999999
       OR EXISTS (SELECT 1 FROM transactions WHERE rrn > '009999999999') THEN
        RAISE EXCEPTION 'RRNs beyond node 00''s range were given: choose this node''s number by hand';
    END IF;
END
$$;
ALTER SEQUENCE rrn_seq RENAME TO rrn_node_seq;
ALTER SEQUENCE rrn_node_seq MINVALUE 1 MAXVALUE 9999999999 NO CYCLE;
ALTER TABLE transactions
    ALTER COLUMN rrn SET DEFAULT lpad(nextval('rrn_node_seq')::text, 12, '0');
COMMENT ON SEQUENCE rrn_node_seq IS
    'local: this node''s RRNs; its range (set_rrn_node) puts the node number in the first two digits';

CREATE FUNCTION rrn_node() RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT (min_value / 10000000000)::integer FROM pg_sequences
    WHERE schemaname = current_schema() AND sequencename = 'rrn_node_seq'
$$;

-- Give this node the number `node` (a new node of a distributed deployment, or this one
-- once its range is used up). Refused when this node already gave an RRN of that number.
CREATE FUNCTION set_rrn_node(node integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    first bigint := node::bigint * 10000000000 + 1;
BEGIN
    IF node NOT BETWEEN 0 AND 99 THEN
        RAISE EXCEPTION 'an RRN node number is 0..99, not %', node;
    END IF;
    IF EXISTS (SELECT 1 FROM transactions WHERE rrn LIKE lpad(node::text, 2, '0') || '%') THEN
        RAISE EXCEPTION 'RRNs of node % were given here already', node;
    END IF;
    -- Bounds in an order that is valid at every step, whatever the old range was.
    EXECUTE format('ALTER SEQUENCE rrn_node_seq MINVALUE 1 MAXVALUE %s', 99 * 10000000000 + 9999999999);
    EXECUTE format('ALTER SEQUENCE rrn_node_seq MINVALUE %s MAXVALUE %s START %s RESTART',
                   first, first + 9999999998, first);
END
$$;

-- --- Cards: distributed by account_id; the PAN's uniqueness in card_numbers ---------------

-- (card_id, account_id): card_id first, so a look-up by card_id alone keeps its index.
ALTER TABLE cards DROP CONSTRAINT cards_pkey, DROP CONSTRAINT cards_pan_key;
ALTER TABLE cards ADD PRIMARY KEY (card_id, account_id);
CREATE INDEX cards_pan_idx ON cards (pan);
-- A replacement is issued on the replaced card's account (store/people.py).
ALTER TABLE cards ADD CONSTRAINT cards_replaces_card_fkey
    FOREIGN KEY (replaces_card_id, account_id) REFERENCES cards (card_id, account_id);

-- Which account holds a PAN, distributed by pan: a terminal's request names the card by
-- its PAN only, and this routes it to the account's shard; its primary key keeps a PAN
-- issued once.
CREATE TABLE card_numbers (
    pan         varchar(19) PRIMARY KEY,
    account_id  bigint NOT NULL,
    card_id     bigint NOT NULL
);
INSERT INTO card_numbers (pan, account_id, card_id) SELECT pan, account_id, card_id FROM cards;

CREATE FUNCTION card_numbers_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO card_numbers (pan, account_id, card_id)
    SELECT pan, account_id, card_id FROM added_cards;
    RETURN NULL;
END
$$;
CREATE TRIGGER cards_numbered AFTER INSERT ON cards
    REFERENCING NEW TABLE AS added_cards
    FOR EACH STATEMENT EXECUTE FUNCTION card_numbers_add();

-- The keys a lookup table copies never change (a new card is a new row).
CREATE FUNCTION keys_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: % and its key columns do not change', TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'check_violation';
END
$$;
CREATE TRIGGER cards_keys_fixed BEFORE UPDATE OF pan, account_id, card_id ON cards
    FOR EACH ROW EXECUTE FUNCTION keys_are_immutable('pan');

-- --- Accounts: one per person, the ID number's uniqueness in account_holders -------------

ALTER TABLE individual_accounts DROP CONSTRAINT individual_accounts_ssn_key;
CREATE INDEX individual_accounts_ssn_idx ON individual_accounts (ssn);
-- The holder's ID number is copied onto the rows of the account that name a person;
-- this key makes those copies foreign keys on the account's shard.
ALTER TABLE individual_accounts ADD CONSTRAINT individual_accounts_holder_key
    UNIQUE (account_id, ssn);

-- The account of an ID number, on the person side (local, like people): its primary key
-- keeps one account per person, its foreign key that the person exists.
CREATE TABLE account_holders (
    ssn         char(18) PRIMARY KEY REFERENCES people,
    account_id  bigint NOT NULL
);
INSERT INTO account_holders (ssn, account_id) SELECT ssn, account_id FROM individual_accounts;

CREATE FUNCTION account_holders_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_holders (ssn, account_id) SELECT ssn, account_id FROM added_accounts;
    RETURN NULL;
END
$$;
CREATE TRIGGER individual_accounts_held AFTER INSERT ON individual_accounts
    REFERENCING NEW TABLE AS added_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION account_holders_add();
CREATE TRIGGER individual_accounts_keys_fixed BEFORE UPDATE OF ssn, account_id
    ON individual_accounts
    FOR EACH ROW EXECUTE FUNCTION keys_are_immutable('ssn');

-- --- The money side: distributed by account_id, co-located -------------------------------

-- The year accumulators of a person are those of the person's one account.
ALTER TABLE fund_accumulators ADD COLUMN account_id bigint;
UPDATE fund_accumulators f SET account_id = a.account_id
FROM individual_accounts a WHERE a.ssn = f.ssn;
ALTER TABLE fund_accumulators
    ALTER COLUMN account_id SET NOT NULL,
    DROP CONSTRAINT fund_accumulators_pkey,
    ADD PRIMARY KEY (account_id, year),
    ADD CONSTRAINT fund_accumulators_holder_fkey
        FOREIGN KEY (account_id, ssn) REFERENCES individual_accounts (account_id, ssn);
CREATE INDEX fund_accumulators_ssn_idx ON fund_accumulators (ssn, year);

ALTER TABLE settlement_splits
    DROP CONSTRAINT settlement_splits_pkey,
    DROP CONSTRAINT settlement_splits_undone_by_key,
    ADD PRIMARY KEY (transaction_id, account_id),
    ADD CONSTRAINT settlement_splits_undone_by_key UNIQUE (undone_by, account_id),
    ADD CONSTRAINT settlement_splits_holder_fkey
        FOREIGN KEY (account_id, ssn) REFERENCES individual_accounts (account_id, ssn);

ALTER TABLE settlement_lines
    DROP CONSTRAINT settlement_lines_pkey,
    ADD PRIMARY KEY (transaction_id, line_no, account_id),
    ADD CONSTRAINT settlement_lines_split_fkey FOREIGN KEY (transaction_id, account_id)
        REFERENCES settlement_splits (transaction_id, account_id);

ALTER TABLE fund_journal
    ADD CONSTRAINT fund_journal_split_fkey FOREIGN KEY (purchase_id, account_id)
        REFERENCES settlement_splits (transaction_id, account_id),
    ADD CONSTRAINT fund_journal_holder_fkey
        FOREIGN KEY (account_id, ssn) REFERENCES individual_accounts (account_id, ssn);

ALTER TABLE allocations ADD CONSTRAINT allocations_holder_fkey
    FOREIGN KEY (account_id, ssn) REFERENCES individual_accounts (account_id, ssn);
