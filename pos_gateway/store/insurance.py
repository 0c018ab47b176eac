"""Employers, employments, suspensions, contributions read-side, and the allocation run."""

from __future__ import annotations

from datetime import date

import asyncpg

from pos_gateway.domain.coverage import Suspension

_EMPLOYMENT_COLUMNS = """
e.employment_id, e.ssn, e.employer_id, e.kind, e.hired_on, e.registered_on,
e.late_registration, e.ended_on, e.registered_by, p.name AS person_name,
r.name AS employer_name, e.registered_on - e.hired_on AS days_to_register
"""

# Employers ------------------------------------------------------------------------------


async def insert_employer(
    conn: asyncpg.Connection, employer_id: str, name: str
) -> asyncpg.Record | None:
    """None when the code is already registered."""
    return await conn.fetchrow(
        """
        INSERT INTO employers (employer_id, name) VALUES ($1, $2)
        ON CONFLICT (employer_id) DO NOTHING
        RETURNING employer_id, name, created_at
        """,
        employer_id,
        name,
    )


async def get_employer(
    conn: asyncpg.Connection | asyncpg.Pool, employer_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT employer_id, name, created_at FROM employers WHERE employer_id = $1",
        employer_id,
    )


# Employments ----------------------------------------------------------------------------


async def insert_employment(
    conn: asyncpg.Connection,
    *,
    ssn: str,
    employer_id: str | None,
    kind: str,
    hired_on: date,
    registered_on: date,
    late: bool,
    registered_by: str,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""
        WITH e AS (
            INSERT INTO employments (ssn, employer_id, kind, hired_on, registered_on,
                                     late_registration, registered_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            RETURNING *
        )
        SELECT {_EMPLOYMENT_COLUMNS}
        FROM e JOIN people p USING (ssn) LEFT JOIN employers r USING (employer_id)
        """,
        ssn,
        employer_id,
        kind,
        hired_on,
        registered_on,
        late,
        registered_by,
    )


async def get_employment(conn: asyncpg.Connection, employment_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        SELECT {_EMPLOYMENT_COLUMNS}
        FROM employments e JOIN people p USING (ssn) LEFT JOIN employers r USING (employer_id)
        WHERE e.employment_id = $1
        """,
        employment_id,
    )


async def end_employment(conn: asyncpg.Connection, employment_id: int, ended_on: date) -> bool:
    result = await conn.execute(
        """
        UPDATE employments SET ended_on = $2
        WHERE employment_id = $1 AND ended_on IS NULL AND hired_on <= $2
        """,
        employment_id,
        ended_on,
    )
    return result != "UPDATE 0"


async def employments_of_person(
    conn: asyncpg.Connection | asyncpg.Pool, ssn: str
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""
        SELECT {_EMPLOYMENT_COLUMNS}
        FROM employments e JOIN people p USING (ssn) LEFT JOIN employers r USING (employer_id)
        WHERE e.ssn = $1 ORDER BY e.hired_on, e.employment_id
        """,
        ssn,
    )


async def employments_of_employer(
    conn: asyncpg.Connection | asyncpg.Pool, employer_id: str, first: date, last: date
) -> list[asyncpg.Record]:
    """Employments that overlap the months first..last (month starts)."""
    return await conn.fetch(
        f"""
        SELECT {_EMPLOYMENT_COLUMNS}
        FROM employments e JOIN people p USING (ssn) LEFT JOIN employers r USING (employer_id)
        WHERE e.employer_id = $1
          AND e.hired_on < ($3::date + interval '1 month')
          AND (e.ended_on IS NULL OR e.ended_on >= $2)
        ORDER BY e.ssn, e.hired_on
        """,
        employer_id,
        first,
        last,
    )


async def late_registrations(
    conn: asyncpg.Connection | asyncpg.Pool,
    first: date,
    last: date,
    employer_id: str | None,
) -> list[asyncpg.Record]:
    """Late registrations made between first and last (registration dates, inclusive)."""
    return await conn.fetch(
        f"""
        SELECT {_EMPLOYMENT_COLUMNS}
        FROM employments e JOIN people p USING (ssn) LEFT JOIN employers r USING (employer_id)
        WHERE e.late_registration AND e.registered_on BETWEEN $1 AND $2
          AND ($3::text IS NULL OR e.employer_id = $3)
        ORDER BY e.registered_on, e.employment_id
        """,
        first,
        last,
        employer_id,
    )


# People locks, suspensions and contributions --------------------------------------------


async def lock_person(conn: asyncpg.Connection, ssn: str) -> asyncpg.Record | None:
    """Serializes contributions and suspension declarations of one person (NO KEY: rows
    that merely reference the person, like a new session, need not wait)."""
    return await conn.fetchrow("SELECT ssn, name FROM people WHERE ssn = $1 FOR NO KEY UPDATE", ssn)


async def suspensions_of(conn: asyncpg.Connection | asyncpg.Pool, ssn: str) -> list[Suspension]:
    rows = await conn.fetch(
        "SELECT from_month, resumed_from FROM suspensions WHERE ssn = $1 ORDER BY from_month",
        ssn,
    )
    return [Suspension(r["from_month"], r["resumed_from"]) for r in rows]


async def insert_suspension(
    conn: asyncpg.Connection, ssn: str, from_month: date, declared_by: str
) -> asyncpg.Record:
    return await conn.fetchrow(
        """
        INSERT INTO suspensions (ssn, from_month, declared_by) VALUES ($1, $2, $3)
        RETURNING suspension_id, from_month, declared_at
        """,
        ssn,
        from_month,
        declared_by,
    )


async def resume_suspension(conn: asyncpg.Connection, ssn: str, month: date) -> date | None:
    """Close the open suspension from `month` on; its start month, or None."""
    return await conn.fetchval(
        """
        UPDATE suspensions SET resumed_from = $2
        WHERE ssn = $1 AND resumed_from IS NULL AND from_month < $2
        RETURNING from_month
        """,
        ssn,
        month,
    )


async def last_contribution_month(conn: asyncpg.Connection, ssn: str) -> date | None:
    return await conn.fetchval("SELECT max(month) FROM contributions WHERE ssn = $1", ssn)


async def contribution_months(
    conn: asyncpg.Connection | asyncpg.Pool, ssn: str, first: date, last: date
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT month, employer_part, individual_part, paid_at
        FROM contributions WHERE ssn = $1 AND month BETWEEN $2 AND $3 ORDER BY month
        """,
        ssn,
        first,
        last,
    )


async def contributions_of_people(
    conn: asyncpg.Connection | asyncpg.Pool, ssns: list[str], first: date, last: date
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT ssn, month, employer_part, individual_part
        FROM contributions
        WHERE ssn = ANY($1::text[]) AND month BETWEEN $2 AND $3
        ORDER BY ssn, month
        """,
        ssns,
        first,
        last,
    )


async def suspensions_of_people(
    conn: asyncpg.Connection | asyncpg.Pool, ssns: list[str]
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT ssn, from_month, resumed_from FROM suspensions
        WHERE ssn = ANY($1::text[]) ORDER BY ssn, from_month
        """,
        ssns,
    )


# The allocation run ---------------------------------------------------------------------


async def pending_allocations(
    conn: asyncpg.Connection, month: date, after_ssn: str, limit: int
) -> list[asyncpg.Record]:
    """One page of the month's contributions not yet allocated, keyset on the ssn, so
    each page is a range scan of contributions_month_idx whatever the month's size."""
    return await conn.fetch(
        """
        SELECT a.account_id, c.ssn, c.employer_part, c.individual_part
        FROM contributions c JOIN individual_accounts a USING (ssn)
        WHERE c.month = $1 AND c.ssn > $2
          AND NOT EXISTS (SELECT 1 FROM allocations x
                          WHERE x.account_id = a.account_id AND x.month = $1)
        ORDER BY c.ssn
        LIMIT $3
        """,
        month,
        after_ssn,
        limit,
    )


async def claim_allocations(
    conn: asyncpg.Connection,
    month: date,
    account_ids: list[int],
    ssns: list[str],
    employer_parts: list[int],
    individual_parts: list[int],
    amounts: list[int],
) -> list[asyncpg.Record]:
    """Insert the allocation rows; those another run inserted first are skipped (the
    (account, month) key is the idempotency key). Returns the rows claimed by this call.
    Inserted in account order: two concurrent runs then wait on each other's rows in one
    order, and cannot deadlock."""
    return await conn.fetch(
        """
        INSERT INTO allocations (account_id, month, ssn, employer_part, individual_part, amount)
        SELECT d.account_id, $1, d.ssn, d.employer_part, d.individual_part, d.amount
        FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
             AS d(account_id, ssn, employer_part, individual_part, amount)
        ORDER BY d.account_id
        ON CONFLICT (account_id, month) DO NOTHING
        RETURNING account_id, amount
        """,
        month,
        account_ids,
        ssns,
        employer_parts,
        individual_parts,
        amounts,
    )


async def credit_allocations(
    conn: asyncpg.Connection, account_ids: list[int], amounts: list[int], reference: str
) -> int:
    """Lock the accounts in account order, then credit them all and journal one
    'allocation' line each, in one statement. Each account appears once, so no two
    updates target one row. Returns the number of journal lines written."""
    await conn.execute(
        """
        SELECT 1 FROM individual_accounts
        WHERE account_id = ANY($1::bigint[]) ORDER BY account_id FOR NO KEY UPDATE
        """,
        account_ids,
    )
    return await conn.fetchval(
        """
        WITH d AS (
            SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS d(account_id, amount)
        ), credited AS (
            UPDATE individual_accounts a SET balance = a.balance + d.amount
            FROM d WHERE a.account_id = d.account_id
            RETURNING a.account_id, d.amount, a.balance
        ), lines AS (
            INSERT INTO journal (account_id, kind, amount, balance_after, reference)
            SELECT account_id, 'allocation', amount, balance, $3
            FROM credited ORDER BY account_id
            RETURNING 1
        )
        SELECT count(*) FROM lines
        """,
        account_ids,
        amounts,
        reference,
    )


async def allocation_summary(
    conn: asyncpg.Connection | asyncpg.Pool, month: date
) -> asyncpg.Record:
    return await conn.fetchrow(
        """
        SELECT
            (SELECT count(*) FROM allocations WHERE month = $1) AS persons,
            (SELECT coalesce(sum(amount), 0)::bigint FROM allocations WHERE month = $1)
                AS amount,
            (SELECT coalesce(sum(employer_part), 0)::bigint FROM allocations WHERE month = $1)
                AS employer_part,
            (SELECT coalesce(sum(individual_part), 0)::bigint
             FROM allocations WHERE month = $1) AS individual_part,
            (SELECT count(*) FROM contributions c JOIN individual_accounts a USING (ssn)
             WHERE c.month = $1 AND NOT EXISTS (
                 SELECT 1 FROM allocations x
                 WHERE x.account_id = a.account_id AND x.month = $1)) AS pending
        """,
        month,
    )


async def allocation_lines(
    conn: asyncpg.Connection | asyncpg.Pool, month: date, after_account_id: int, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT x.account_id, x.ssn, p.name, x.employer_part, x.individual_part, x.amount,
               x.allocated_at
        FROM allocations x JOIN people p USING (ssn)
        WHERE x.month = $1 AND x.account_id > $2
        ORDER BY x.account_id
        LIMIT $3
        """,
        month,
        after_account_id,
        limit,
    )
