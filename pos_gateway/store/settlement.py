"""Settlement split (DESIGN §10): catalogue and policy, the itemised purchase's own write
path, its refund and its undo on reversal, and the fund's journal.

Lock order, everywhere: the person (their year accumulators, FOR UPDATE), then the
account (FOR NO KEY UPDATE). The plain purchase paths lock only the account, so no path
ever takes a person after an account, and two of these transactions cannot deadlock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg

from pos_gateway.domain.coverage import Suspension
from pos_gateway.domain.decisions import DailyUse
from pos_gateway.domain.split import (
    Accumulators,
    CatalogueItem,
    Line,
    Policy,
    Settlement,
    Split,
    line_eligible,
)
from pos_gateway.store.transactions import _RETURNING, DuplicateKey, RequestKey, StoredAnswer

# Catalogue and policy -----------------------------------------------------------------


async def catalogue_items(
    conn: asyncpg.Connection | asyncpg.Pool, codes: Sequence[str]
) -> dict[str, CatalogueItem]:
    rows = await conn.fetch(
        "SELECT code, category, self_pay_bp FROM catalogue_items WHERE code = ANY($1::text[])",
        list(set(codes)),
    )
    return {r["code"]: CatalogueItem(r["code"], r["category"], r["self_pay_bp"]) for r in rows}


async def list_catalogue(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT code, name, category, self_pay_bp FROM catalogue_items ORDER BY code"
    )


async def upsert_catalogue(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace items by code (one statement: all or nothing)."""
    await conn.execute(
        """
        INSERT INTO catalogue_items (code, name, category, self_pay_bp)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
        ON CONFLICT (code) DO UPDATE
        SET name = EXCLUDED.name, category = EXCLUDED.category,
            self_pay_bp = EXCLUDED.self_pay_bp, updated_at = now()
        """,
        [r["code"] for r in rows],
        [r["name"] for r in rows],
        [r["category"] for r in rows],
        [r["self_pay_bp"] for r in rows],
    )


_POLICY_COLUMNS = (
    "merchant_kind", "year", "deductible", "fund_ratio_bp", "annual_cap",
    "daily_amount_limit", "daily_count_limit",
)  # fmt: skip


async def upsert_policies(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    await conn.execute(
        """
        INSERT INTO settlement_policies (merchant_kind, year, deductible, fund_ratio_bp,
                                         annual_cap, daily_amount_limit, daily_count_limit)
        SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::int[], $5::bigint[],
                             $6::bigint[], $7::int[])
        ON CONFLICT (merchant_kind, year) DO UPDATE
        SET deductible = EXCLUDED.deductible, fund_ratio_bp = EXCLUDED.fund_ratio_bp,
            annual_cap = EXCLUDED.annual_cap,
            daily_amount_limit = EXCLUDED.daily_amount_limit,
            daily_count_limit = EXCLUDED.daily_count_limit, updated_at = now()
        """,
        *([r[name] for r in rows] for name in _POLICY_COLUMNS),
    )


async def list_policies(
    conn: asyncpg.Connection | asyncpg.Pool, year: int | None = None
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT merchant_kind, year, deductible, fund_ratio_bp, annual_cap,
               daily_amount_limit, daily_count_limit
        FROM settlement_policies WHERE $1::int IS NULL OR year = $1
        ORDER BY year, merchant_kind
        """,
        year,
    )


# The itemised purchase and the settlement trial -----------------------------------------


@dataclass(frozen=True, slots=True)
class ItemisedRequest:
    key: RequestKey
    request_hash: bytes
    txn_type: str  # purchase | settlement_trial
    merchant_id: str
    card_id: int
    amount: int
    # (code, quantity, unit_price); None: a plain purchase under the policy's daily limits
    items: tuple[tuple[str, int, int], ...] | None
    account_max: int | None
    auth_code: str
    # The PIN-failure count this request's try took the card to (store.transactions.
    # claim_pin_try); 0 when no PIN was checked (a trial sent without one).
    pin_try: int
    business_date: date


@dataclass(frozen=True, slots=True)
class ItemisedState:
    """What the decision reads, with the person and the account locked (for a purchase)."""

    card_status: str
    pin_failures: int
    account_status: str
    balance: int
    catalogue: dict[str, CatalogueItem]
    policy: Policy | None
    used: Accumulators
    paid_months: list[date]
    suspensions: list[Suspension]
    daily: DailyUse


_CARD_AND_PERSON = """
SELECT c.card_id, c.account_id, a.ssn, m.kind AS merchant_kind
FROM cards c JOIN individual_accounts a USING (account_id), merchants m
WHERE c.card_id = $1 AND m.merchant_id = $2
"""

# The person's pair for the year (kept on the person's one account: schema/009), created
# on first use; the no-op update locks it (as FOR UPDATE would) and returns it in the
# same round trip.
_LOCK_PERSON = """
INSERT INTO fund_accumulators (account_id, ssn, year)
SELECT account_id, ssn, $2 FROM individual_accounts WHERE ssn = $1
ON CONFLICT (account_id, year) DO UPDATE SET ssn = EXCLUDED.ssn
RETURNING deductible_used, fund_used
"""

_PERSON_YEAR = """
SELECT deductible_used, fund_used FROM fund_accumulators WHERE ssn = $1 AND year = $2
"""

_LOCK_ACCOUNT = """
SELECT c.status, c.pin_failures, a.status AS account_status, a.balance
FROM cards c JOIN individual_accounts a USING (account_id)
WHERE c.card_id = $1
"""

# Everything else the decision reads, in one round trip (after the locks, so the day's
# purchases of the card include every one committed before).
_SETTLEMENT_CONTEXT = """
SELECT p.deductible, p.fund_ratio_bp, p.annual_cap, p.daily_amount_limit,
       p.daily_count_limit, p.year IS NOT NULL AS has_policy,
       ARRAY(SELECT month FROM contributions WHERE ssn = $1 AND month <= $2) AS paid,
       ARRAY(SELECT from_month FROM suspensions WHERE ssn = $1 ORDER BY suspension_id)
           AS suspended_from,
       ARRAY(SELECT resumed_from FROM suspensions WHERE ssn = $1 ORDER BY suspension_id)
           AS resumed_from,
       ARRAY(SELECT code FROM catalogue_items WHERE code = ANY($7::text[]) ORDER BY code)
           AS codes,
       ARRAY(SELECT category FROM catalogue_items WHERE code = ANY($7::text[]) ORDER BY code)
           AS categories,
       ARRAY(SELECT self_pay_bp FROM catalogue_items WHERE code = ANY($7::text[])
             ORDER BY code) AS self_pay_bps,
       d.count AS daily_count, d.amount AS daily_amount
FROM (SELECT 1) AS one
LEFT JOIN settlement_policies p ON p.merchant_kind = $3 AND p.year = $4
-- The card's day is counted only when the policy limits it.
CROSS JOIN LATERAL (
    SELECT count(*) AS count,
           coalesce(sum(coalesce(s.total, t.amount)), 0)::bigint AS amount
    FROM transactions t LEFT JOIN settlement_splits s USING (transaction_id)
    WHERE (p.daily_amount_limit IS NOT NULL OR p.daily_count_limit IS NOT NULL)
      AND t.card_id = $5 AND t.local_date = $6 AND t.txn_type = 'purchase'
      AND t.response_code = '00' AND NOT t.reversed) d
"""


# The whole record of an itemised purchase (or trial, or limited plain purchase) in one
# statement: its row; when approved, its split and lines; the account's debit and journal
# line; the fund's journal line and the accumulators (a purchase only); the PIN counter
# reset. Foreign keys between these rows are checked at the end of the statement.
_RECORD = f"""
WITH txn AS (
    INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                              merchant_id, card_id, account_id, amount, response_code,
                              balance, auth_code)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    RETURNING *
), split AS (
    INSERT INTO settlement_splits (transaction_id, account_id, ssn, year, merchant_id,
                                   business_date, total, eligible, deductible_applied,
                                   fund, account, cash, covered)
    SELECT transaction_id, $8, $14, $15, $6, $16, $17, $18, $19, $20, $21, $22, $23
    FROM txn WHERE $13
), split_lines AS (
    INSERT INTO settlement_lines (transaction_id, line_no, account_id, code, category,
                                  self_pay_bp, quantity, unit_price, eligible)
    SELECT txn.transaction_id, l.n, $8, l.code, l.category, l.bp, l.qty, l.price, l.elig
    FROM txn, unnest($24::text[], $25::text[], $26::int[], $27::int[], $28::bigint[],
                     $29::bigint[]) WITH ORDINALITY AS l(code, category, bp, qty, price, elig, n)
    WHERE $13
), debit AS (
    -- The account is locked and the decision kept the debit <= balance; the condition
    -- (and the CHECK) stay as the last line of defence.
    UPDATE individual_accounts SET balance = balance - $30
    WHERE account_id = $8 AND $30 > 0 AND balance >= $30
    RETURNING account_id, balance
), journal_line AS (
    INSERT INTO journal (account_id, kind, amount, balance_after, transaction_id,
                         terminal_id, merchant_id)
    SELECT debit.account_id, 'purchase', -$30::bigint, debit.balance, txn.transaction_id,
           txn.terminal_id, txn.merchant_id
    FROM debit, txn
), fund_line AS (
    INSERT INTO fund_journal (account_id, ssn, merchant_id, local_date, kind, amount,
                              purchase_id, transaction_id)
    SELECT $8, $14, $6, $2, 'purchase', $20, transaction_id, transaction_id
    FROM txn WHERE $13 AND $5 = 'purchase' AND $20 > 0
), accumulated AS (
    UPDATE fund_accumulators
    SET deductible_used = deductible_used + $19, fund_used = fund_used + $20
    WHERE ssn = $14 AND year = $15 AND $13 AND $5 = 'purchase' AND ($19 > 0 OR $20 > 0)
), pin_count AS (
    UPDATE cards SET pin_failures = $31 WHERE card_id = $7 AND $31::int IS NOT NULL
)
SELECT {_RETURNING.replace("RETURNING", "")} FROM txn
"""


async def _lock_person(conn: asyncpg.Connection, ssn: str, year: int) -> Accumulators:
    row = await conn.fetchrow(_LOCK_PERSON, ssn, year)
    return Accumulators(row["deductible_used"], row["fund_used"])


async def record_itemised(
    pool: asyncpg.Pool,
    request: ItemisedRequest,
    decide: Callable[[ItemisedRequest, ItemisedState], Settlement],
) -> tuple[StoredAnswer, Split | None]:
    """Decide and record an itemised purchase (or trial) in one transaction: the person's
    accumulators, then the account, are locked; the split is decided on what they hold;
    the request's row, its split and lines, the account's debit and journal line, the
    fund's journal line and the accumulators are written before the one commit. A trial
    locks nothing and moves nothing: it records its answer and its split for replay."""
    year = request.business_date.year
    moves = request.txn_type == "purchase"
    async with _request_transaction(pool) as conn:
        who = await conn.fetchrow(_CARD_AND_PERSON, request.card_id, request.merchant_id)
        ssn, account_id = who["ssn"], who["account_id"]
        if moves:
            used = await _lock_person(conn, ssn, year)
            # The card too: its PIN-failure count is decided on and written here, and a
            # try counted meanwhile (claim_pin_try) waits for the commit.
            account = await conn.fetchrow(
                _LOCK_ACCOUNT + " FOR NO KEY UPDATE OF a, c", request.card_id
            )
        else:
            row = await conn.fetchrow(_PERSON_YEAR, ssn, year)
            used = Accumulators(*row) if row else Accumulators()
            account = await conn.fetchrow(
                _LOCK_ACCOUNT + (" FOR NO KEY UPDATE OF c" if request.pin_try else ""),
                request.card_id,
            )
        context = await conn.fetchrow(
            _SETTLEMENT_CONTEXT, ssn, request.business_date, who["merchant_kind"], year,
            request.card_id, request.key.local_date,
            list({code for code, _, _ in request.items or ()}),
        )  # fmt: skip
        policy = (
            Policy(**{name: context[name] for name in _POLICY_COLUMNS[2:]})
            if context["has_policy"]
            else None
        )
        state = ItemisedState(
            card_status=account["status"],
            pin_failures=account["pin_failures"],
            account_status=account["account_status"],
            balance=account["balance"],
            catalogue={
                code: CatalogueItem(code, category, bp)
                for code, category, bp in zip(
                    context["codes"], context["categories"], context["self_pay_bps"], strict=True
                )
            },
            policy=policy,
            used=used,
            paid_months=list(context["paid"]),
            suspensions=[
                Suspension(start, resumed)
                for start, resumed in zip(
                    context["suspended_from"], context["resumed_from"], strict=True
                )
            ],
            daily=DailyUse(
                amount=context["daily_amount"],
                count=context["daily_count"],
                amount_limit=policy.daily_amount_limit if policy else None,
                count_limit=policy.daily_count_limit if policy else None,
            ),
        )
        outcome = decide(request, state)
        split = outcome.split
        approved = outcome.code == "00"
        # An approved itemised purchase's row holds the individual-account part: the
        # batch totals, journal checks, refunds and reversals all count that part.
        recorded_amount = split.account if approved and moves and split else request.amount
        debit = (split.account if split else request.amount) if approved and moves else 0
        written = split if approved else None
        lines = [
            Line(state.catalogue[code], quantity, price)
            for code, quantity, price in ((request.items or ()) if written else ())
        ]
        parts = written or Split(0, 0, 0, 0, 0, 0, False)
        row = await conn.fetchrow(
            _RECORD,
            *_key_args(request.key), request.request_hash, request.txn_type,
            request.merchant_id, request.card_id, account_id, recorded_amount,
            outcome.code.value, outcome.balance if approved else None,
            request.auth_code if approved else None,
            written is not None, ssn, year, request.business_date, parts.total,
            parts.eligible, parts.deductible_applied, parts.fund, parts.account, parts.cash,
            parts.covered,
            [line.item.code for line in lines], [line.item.category for line in lines],
            [line.item.self_pay_bp for line in lines], [line.quantity for line in lines],
            [line.unit_price for line in lines], [line_eligible(line) for line in lines],
            debit,
            # Written only by a request whose try was counted, and only when it changes.
            outcome.pin_failures
            if request.pin_try and outcome.pin_failures != state.pin_failures
            else None,
        )  # fmt: skip
    return StoredAnswer.from_row(row), split if approved else None


@contextlib.asynccontextmanager
async def _request_transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One transaction for a terminal request; its key taken meanwhile is DuplicateKey."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            yield conn
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "transactions_pkey":
            raise DuplicateKey from exc
        raise


def _key_args(key: RequestKey) -> tuple[str, date, str]:
    return key.terminal_id, key.local_date, key.stan


async def has_daily_limits(
    conn: asyncpg.Connection | asyncpg.Pool, merchant_id: str, year: int
) -> bool:
    """Does the policy of this merchant's kind and year set a daily limit per card?"""
    return await conn.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM settlement_policies p JOIN merchants m ON m.kind = p.merchant_kind
            WHERE m.merchant_id = $1 AND p.year = $2
              AND (p.daily_amount_limit IS NOT NULL OR p.daily_count_limit IS NOT NULL))
        """,
        merchant_id,
        year,
    )


async def _fund_line(
    conn: asyncpg.Connection,
    account_id: int,
    ssn: str,
    merchant_id: str,
    local_date: date,
    kind: str,
    amount: int,
    purchase_id: UUID,
    transaction_id: UUID,
) -> None:
    await conn.execute(
        """
        INSERT INTO fund_journal (account_id, ssn, merchant_id, local_date, kind, amount,
                                  purchase_id, transaction_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        account_id, ssn, merchant_id, local_date, kind, amount, purchase_id,
        transaction_id,
    )  # fmt: skip


async def _accumulate(
    conn: asyncpg.Connection, ssn: str, year: int, deductible: int, fund: int
) -> None:
    await conn.execute(
        """
        UPDATE fund_accumulators
        SET deductible_used = deductible_used + $3, fund_used = fund_used + $4
        WHERE ssn = $1 AND year = $2
        """,
        ssn,
        year,
        deductible,
        fund,
    )


async def split_of(conn: asyncpg.Connection | asyncpg.Pool, transaction_id: UUID) -> Split | None:
    row = await conn.fetchrow(
        """
        SELECT total, eligible, deductible_applied, fund, account, cash, covered
        FROM settlement_splits WHERE transaction_id = $1
        """,
        transaction_id,
    )
    return Split(**dict(row)) if row else None


# Giving an itemised purchase back whole --------------------------------------------------

_SPLIT_BY_RRN = """
SELECT s.transaction_id, s.ssn, s.year, s.total, s.account, s.undone_by
FROM transactions t JOIN settlement_splits s USING (transaction_id)
WHERE t.rrn = $1 AND t.txn_type = 'purchase'
"""


async def itemised_original(
    conn: asyncpg.Connection | asyncpg.Pool, rrn: str
) -> asyncpg.Record | None:
    """The split of the itemised purchase with this RRN (None: not an itemised purchase)."""
    return await conn.fetchrow(_SPLIT_BY_RRN, rrn)


async def lock_person_for_reversal(
    conn: asyncpg.Connection, terminal_id: str, stan: str, local_dates: list[date]
) -> None:
    """Before a reversal locks its original or touches the account: the person of the
    itemised purchase it may reverse, so the lock order stays person, then transaction
    and account, as an itemised refund takes them."""
    await conn.execute(
        """
        SELECT 1 FROM fund_accumulators f
        JOIN settlement_splits s USING (ssn, year)
        JOIN transactions t USING (transaction_id)
        WHERE t.terminal_id = $1 AND t.stan = $2 AND t.local_date = ANY($3::date[])
        FOR UPDATE OF f
        """,
        terminal_id,
        stan,
        local_dates,
    )


async def undo_after_reversal(conn: asyncpg.Connection, reversal_id: UUID) -> None:
    """A reversal that reversed an itemised purchase gives its fund share back too."""
    original = await conn.fetchval(
        """
        SELECT o.transaction_id FROM transactions v
        JOIN transactions o ON o.transaction_id = v.original_transaction_id
        WHERE v.transaction_id = $1 AND v.response_code = '00' AND o.reversed
        """,
        reversal_id,
    )
    if original is not None:
        await undo_split(conn, original, reversal_id, "reversal")


async def undo_split(
    conn: asyncpg.Connection, purchase_id: UUID, undone_by: UUID, kind: str
) -> bool:
    """Give the fund share and the accumulators back, once (the split row is claimed);
    the account part is the caller's (the refund's or reversal's own credit)."""
    row = await conn.fetchrow(
        """
        UPDATE settlement_splits SET undone_by = $2
        WHERE transaction_id = $1 AND undone_by IS NULL
        RETURNING account_id, ssn, year, merchant_id, fund, deductible_applied
        """,
        purchase_id,
        undone_by,
    )
    if row is None:
        return False
    if row["fund"] > 0:
        local_date = await conn.fetchval(
            "SELECT local_date FROM transactions WHERE transaction_id = $1", undone_by
        )
        await _fund_line(conn, row["account_id"], row["ssn"], row["merchant_id"],
                         local_date, kind, -row["fund"], purchase_id, undone_by)  # fmt: skip
    if row["fund"] or row["deductible_applied"]:
        await _accumulate(conn, row["ssn"], row["year"], -row["deductible_applied"], -row["fund"])
    return True


async def record_itemised_refund(
    pool: asyncpg.Pool,
    key: RequestKey,
    request_hash: bytes,
    merchant_id: str,
    original_rrn: str,
    amount: int,
    auth_code: str,
    pan: str | None,
) -> StoredAnswer:
    """A refund of an itemised purchase: whole or not at all (any amount but the total is
    13). The account part goes back to the account, the fund share leaves the fund's
    journal, the accumulators shrink, all in one transaction with the person locked first."""
    async with _request_transaction(pool) as conn:
        original = await conn.fetchrow(_SPLIT_BY_RRN, original_rrn)
        await _lock_person(conn, original["ssn"], original["year"])
        purchase = await conn.fetchrow(
            """
            SELECT t.transaction_id, t.card_id, t.account_id, t.amount, t.response_code,
                   t.merchant_id, t.reversed, t.refunded_amount, s.undone_by,
                   (SELECT card_id FROM cards WHERE pan = $2) AS pan_card
            FROM transactions t JOIN settlement_splits s USING (transaction_id)
            WHERE t.transaction_id = $1
            FOR NO KEY UPDATE OF t
            """,
            original["transaction_id"],
            pan,
        )
        if (
            purchase["response_code"] != "00"
            or purchase["merchant_id"] != merchant_id
            or purchase["reversed"]
            or (pan is not None and purchase["pan_card"] != purchase["card_id"])
        ):
            code = "12"
        elif purchase["undone_by"] is not None or amount != original["total"]:
            code = "13"
        else:
            code = "00"
        balance = None
        if code == "00":
            await conn.execute(
                "UPDATE transactions SET refunded_amount = amount WHERE transaction_id = $1",
                purchase["transaction_id"],
            )
            balance = await conn.fetchval(
                """
                UPDATE individual_accounts SET balance = balance + $2 WHERE account_id = $1
                RETURNING balance
                """,
                purchase["account_id"],
                purchase["amount"],
            )
        row = await conn.fetchrow(
            f"""
            INSERT INTO transactions (terminal_id, local_date, stan, request_hash,
                                      txn_type, merchant_id, card_id, account_id, amount,
                                      response_code, balance, auth_code,
                                      original_transaction_id)
            VALUES ($1, $2, $3, $4, 'refund', $5, $6, $7, $8, $9, $10, $11, $12)
            {_RETURNING}
            """,
            *_key_args(key), request_hash, merchant_id, purchase["card_id"],
            purchase["account_id"], purchase["amount"] if code == "00" else amount, code,
            balance, auth_code if code == "00" else None, purchase["transaction_id"],
        )  # fmt: skip
        if code == "00":
            if purchase["amount"] > 0:
                await conn.execute(
                    """
                    INSERT INTO journal (account_id, kind, amount, balance_after,
                                         transaction_id, terminal_id, merchant_id, reference)
                    VALUES ($1, 'refund', $2, $3, $4, $5, $6, $7)
                    """,
                    purchase["account_id"], purchase["amount"], balance,
                    row["transaction_id"], key.terminal_id, merchant_id,
                    f"refund of RRN {original_rrn}",
                )  # fmt: skip
            await undo_split(conn, purchase["transaction_id"], row["transaction_id"], "refund")
    return StoredAnswer.from_row(row)


# Reports and ledger checks ----------------------------------------------------------------

_FUND_AND_CASH = """
WITH moves AS (
    SELECT f.merchant_id, f.amount AS fund, 0::bigint AS cash
    FROM fund_journal f
    WHERE f.local_date = $1 AND ($2::text IS NULL OR f.merchant_id = $2)
    UNION ALL
    SELECT s.merchant_id, 0, s.cash
    FROM settlement_splits s JOIN transactions t USING (transaction_id)
    WHERE t.txn_type = 'purchase' AND t.local_date = $1 AND s.cash > 0
      AND ($2::text IS NULL OR s.merchant_id = $2)
    UNION ALL
    -- The cash part of a purchase given back whole is owed back by the merchant.
    SELECT s.merchant_id, 0, -s.cash
    FROM settlement_splits s JOIN transactions u ON u.transaction_id = s.undone_by
    WHERE u.local_date = $1 AND s.cash > 0 AND ($2::text IS NULL OR s.merchant_id = $2)
)
SELECT merchant_id, sum(fund)::bigint AS fund_amount, sum(cash)::bigint AS cash_amount
FROM moves GROUP BY merchant_id
"""


async def fund_and_cash(
    conn: asyncpg.Connection | asyncpg.Pool, day: date, merchant_id: str | None
) -> dict[str, asyncpg.Record]:
    """Per merchant, for one terminal-local day: what the fund owes it (net) and the cash
    it collected (net of cash owed back)."""
    rows = await conn.fetch(_FUND_AND_CASH, day, merchant_id)
    return {r["merchant_id"]: r for r in rows}


async def fund_liability(
    conn: asyncpg.Connection | asyncpg.Pool, since: date, until: date, merchant_id: str | None
) -> list[asyncpg.Record]:
    """What the pooled fund owes each merchant per day, from its journal."""
    return await conn.fetch(
        """
        SELECT f.merchant_id, m.name AS merchant_name, f.local_date,
               count(*) FILTER (WHERE f.kind = 'purchase') AS purchases_count,
               sum(f.amount) FILTER (WHERE f.kind = 'purchase')::bigint AS owed,
               coalesce(-sum(f.amount) FILTER (WHERE f.kind <> 'purchase'), 0)::bigint
                   AS given_back,
               sum(f.amount)::bigint AS net_amount
        FROM fund_journal f JOIN merchants m USING (merchant_id)
        WHERE f.local_date BETWEEN $1 AND $2 AND ($3::text IS NULL OR f.merchant_id = $3)
        GROUP BY f.merchant_id, m.name, f.local_date
        ORDER BY f.local_date, f.merchant_id
        """,
        since,
        until,
        merchant_id,
    )


# verify-ledger (DESIGN §10): each returns the rows that break one rule.
SETTLEMENT_CHECKS: dict[str, str] = {
    "fund_journal_differs_from_fund_shares": """
        SELECT s.transaction_id, s.fund, s.undone_by, t.response_code, t.reversed,
               coalesce(sum(f.amount), 0)::bigint AS fund_journal
        FROM settlement_splits s
        JOIN transactions t USING (transaction_id)
        LEFT JOIN fund_journal f ON f.purchase_id = s.transaction_id
        GROUP BY s.transaction_id, s.fund, s.undone_by, t.response_code, t.reversed, t.txn_type
        HAVING coalesce(sum(f.amount), 0) <> CASE
                   WHEN t.txn_type = 'purchase' AND t.response_code = '00'
                        AND NOT t.reversed AND s.undone_by IS NULL THEN s.fund
                   ELSE 0 END
    """,
    "accumulators_differ_from_splits": """
        SELECT coalesce(a.ssn, x.ssn) AS ssn, coalesce(a.year, x.year) AS year,
               a.deductible_used, a.fund_used, x.deductible, x.fund
        FROM fund_accumulators a
        FULL JOIN (SELECT s.ssn, s.year, sum(s.deductible_applied)::bigint AS deductible,
                          sum(s.fund)::bigint AS fund
                   FROM settlement_splits s JOIN transactions t USING (transaction_id)
                   WHERE t.txn_type = 'purchase' AND t.response_code = '00'
                     AND s.undone_by IS NULL
                   GROUP BY s.ssn, s.year) x ON x.ssn = a.ssn AND x.year = a.year
        WHERE coalesce(a.deductible_used, 0) <> coalesce(x.deductible, 0)
           OR coalesce(a.fund_used, 0) <> coalesce(x.fund, 0)
    """,
    "itemised_purchase_differs_from_split": """
        SELECT s.transaction_id, t.amount, s.account
        FROM settlement_splits s JOIN transactions t USING (transaction_id)
        WHERE t.txn_type = 'purchase' AND t.amount <> s.account
    """,
    "reversed_itemised_purchase_not_undone": """
        SELECT s.transaction_id FROM settlement_splits s JOIN transactions t USING (transaction_id)
        WHERE t.reversed AND s.undone_by IS NULL
    """,
}
