-- Settlement split (DESIGN §10): catalogue, policy, the person's year accumulators, the
-- split and itemised lines of each purchase, and the pooled fund's journal.

-- The medicine catalogue. A: fully eligible; B: eligible after a self-pay share; C: not.
CREATE TABLE catalogue_items (
    code         text PRIMARY KEY CHECK (code ~ '^[0-9A-Za-z._-]{1,40}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    category     char(1) NOT NULL CHECK (category IN ('A', 'B', 'C')),
    self_pay_bp  integer NOT NULL DEFAULT 0 CHECK (self_pay_bp BETWEEN 0 AND 10000),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (category = 'B' OR self_pay_bp = 0)
);

-- Policy per merchant kind and calendar year; the daily limits are per card (61, 65).
CREATE TABLE settlement_policies (
    merchant_kind       text NOT NULL CHECK (merchant_kind IN ('pharmacy', 'hospital')),
    year                integer NOT NULL CHECK (year BETWEEN 1900 AND 2999),
    deductible          bigint NOT NULL CHECK (deductible >= 0),
    fund_ratio_bp       integer NOT NULL CHECK (fund_ratio_bp BETWEEN 0 AND 10000),
    annual_cap          bigint NOT NULL CHECK (annual_cap >= 0),
    daily_amount_limit  bigint CHECK (daily_amount_limit > 0),
    daily_count_limit   integer CHECK (daily_count_limit > 0),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_kind, year)
);

-- One pair per person and calendar year, shared by all merchant kinds. Locked FOR UPDATE
-- by an itemised purchase, refund or reversal before the account: person, then account.
CREATE TABLE fund_accumulators (
    ssn              char(18) NOT NULL REFERENCES people,
    year             integer NOT NULL CHECK (year BETWEEN 1900 AND 2999),
    deductible_used  bigint NOT NULL DEFAULT 0 CHECK (deductible_used >= 0),
    fund_used        bigint NOT NULL DEFAULT 0 CHECK (fund_used >= 0),
    PRIMARY KEY (ssn, year)
);

-- The split of an itemised purchase (or of a settlement trial, which moves nothing).
-- `undone_by` is the refund or reversal that gave it back whole, at most one.
CREATE TABLE settlement_splits (
    transaction_id      uuid PRIMARY KEY REFERENCES transactions (transaction_id),
    account_id          bigint NOT NULL REFERENCES individual_accounts,
    ssn                 char(18) NOT NULL REFERENCES people,
    year                integer NOT NULL,
    merchant_id         varchar(15) NOT NULL REFERENCES merchants,
    business_date       date NOT NULL,
    total               bigint NOT NULL CHECK (total > 0),
    eligible            bigint NOT NULL CHECK (eligible >= 0),
    deductible_applied  bigint NOT NULL CHECK (deductible_applied >= 0),
    fund                bigint NOT NULL CHECK (fund >= 0),
    account             bigint NOT NULL CHECK (account >= 0),
    cash                bigint NOT NULL CHECK (cash >= 0),
    covered             boolean NOT NULL,
    undone_by           uuid UNIQUE REFERENCES transactions (transaction_id),
    CHECK (fund + account + cash = total),
    CHECK (eligible <= total),
    CHECK (deductible_applied <= eligible),
    CHECK (fund <= eligible - deductible_applied),
    CHECK (covered OR (fund = 0 AND deductible_applied = 0))
);
CREATE INDEX settlement_splits_account_idx ON settlement_splits (account_id);

CREATE TABLE settlement_lines (
    transaction_id  uuid NOT NULL REFERENCES settlement_splits,
    line_no         smallint NOT NULL CHECK (line_no BETWEEN 1 AND 100),
    account_id      bigint NOT NULL REFERENCES individual_accounts,
    code            text NOT NULL REFERENCES catalogue_items,
    category        char(1) NOT NULL CHECK (category IN ('A', 'B', 'C')),
    self_pay_bp     integer NOT NULL CHECK (self_pay_bp BETWEEN 0 AND 10000),
    quantity        integer NOT NULL CHECK (quantity >= 1),
    unit_price      bigint NOT NULL CHECK (unit_price >= 0),
    eligible        bigint NOT NULL CHECK (eligible >= 0 AND eligible <= quantity * unit_price),
    PRIMARY KEY (transaction_id, line_no)
);

-- What the pooled fund owes each merchant: +fund on an itemised purchase, -fund when it
-- is refunded or reversed. Append-only like the account journal.
CREATE TABLE fund_journal (
    entry_id        bigint GENERATED ALWAYS AS IDENTITY,
    account_id      bigint NOT NULL REFERENCES individual_accounts,
    ssn             char(18) NOT NULL REFERENCES people,
    merchant_id     varchar(15) NOT NULL REFERENCES merchants,
    local_date      date NOT NULL,  -- of the request that moved it, as in the settlement
    kind            text NOT NULL CHECK (kind IN ('purchase', 'refund', 'reversal')),
    amount          bigint NOT NULL CHECK (amount <> 0 AND (kind = 'purchase') = (amount > 0)),
    purchase_id     uuid NOT NULL REFERENCES settlement_splits (transaction_id),
    transaction_id  uuid NOT NULL REFERENCES transactions (transaction_id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entry_id)
);
CREATE INDEX fund_journal_merchant_day_idx ON fund_journal (merchant_id, local_date);
CREATE INDEX fund_journal_purchase_idx ON fund_journal (purchase_id);
CREATE TRIGGER fund_journal_append_only BEFORE UPDATE OR DELETE ON fund_journal
    FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER fund_journal_no_truncate BEFORE TRUNCATE ON fund_journal
    FOR EACH STATEMENT EXECUTE FUNCTION journal_is_append_only();

-- The daily limits count a card's purchases of the day from the transactions.
CREATE INDEX transactions_card_day_idx ON transactions (card_id, local_date)
    WHERE txn_type = 'purchase' AND response_code = '00';
