"""Invariants kept by the schema itself (schema/*.sql), and the migration runner.

Rows are written inside a transaction that is rolled back, so nothing is left behind
for the other tests sharing the database.
"""

from __future__ import annotations

import random
import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import pytest

from pos_gateway.domain.cards import luhn_check_digit
from pos_gateway.domain.cards import luhn_valid as py_luhn_valid
from pos_gateway.domain.citizen_id import is_valid_citizen_id, make_citizen_id
from pos_gateway.store.migrations import MigrationError, apply_migrations, schema_dir

from .helpers import new_ssn

# --- helpers -----------------------------------------------------------------------------


def _one_digit_changes(value: str, rng: random.Random, count: int) -> list[str]:
    """`count` copies of `value`, each with one digit replaced by a different digit."""
    changed = []
    for _ in range(count):
        position = rng.randrange(len(value))
        replacement = rng.choice([d for d in "0123456789" if d != value[position]])
        changed.append(value[:position] + replacement + value[position + 1 :])
    return changed


def _random_pan(rng: random.Random | None = None, length: int = 19) -> str:
    """A Luhn-valid PAN under a prefix the gateway does not issue, so it collides with none."""
    rng = rng or random.Random(secrets.randbits(64))
    partial = "99" + "".join(rng.choice("0123456789") for _ in range(length - 3))
    return partial + luhn_check_digit(partial)


async def _sql_map(conn: asyncpg.Connection, function: str, values: list[str]) -> dict[str, bool]:
    rows = await conn.fetch(
        f"SELECT v, {function}(v) AS ok FROM unnest($1::text[]) AS v",  # noqa: S608
        values,
    )
    return {r["v"]: r["ok"] for r in rows}


@pytest.fixture
async def tx(db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """The db connection inside a transaction that is always rolled back."""
    transaction = db.transaction()
    await transaction.start()
    try:
        yield db
    finally:
        await transaction.rollback()


async def _account(conn: asyncpg.Connection, balance: int = 0) -> int:
    ssn = new_ssn()
    await conn.execute("INSERT INTO people (ssn, name) VALUES ($1, 'Schema Test')", ssn)
    return await conn.fetchval(
        "INSERT INTO individual_accounts (ssn, balance) VALUES ($1, $2) RETURNING account_id",
        ssn,
        balance,
    )


async def _card(conn: asyncpg.Connection, account_id: int, pan: str) -> int:
    return await conn.fetchval(
        """
        INSERT INTO cards (pan, account_id, expires_on, pin_hash)
        VALUES ($1, $2, $3, 'not-a-real-hash') RETURNING card_id
        """,
        pan,
        account_id,
        date.today() + timedelta(days=365),
    )


# --- SQL functions agree with the Python rules --------------------------------------------


async def test_sql_luhn_valid_agrees_with_python(db: asyncpg.Connection) -> None:
    rng = random.Random(20261124)
    valid = [_random_pan(rng, length=rng.randint(2, 19)) for _ in range(150)]
    valid += ["79927398713", "4111111111111111", "6217000000000000012", "00", "18"]
    changed = [c for v in valid for c in _one_digit_changes(v, rng, 2)]
    random_digits = ["".join(rng.choice("0123456789") for _ in range(16)) for _ in range(100)]
    odd = [
        "",
        "abc",
        "7992739871a",
        " 79927398713",
        "79927398713 ",
        "-18",
        "７９９２７３９８７１３",
    ]
    values = list(dict.fromkeys(valid + changed + random_digits + odd))

    sql = await _sql_map(db, "luhn_valid", values)

    assert len(values) > 400
    assert all(sql[v] for v in valid)
    assert not any(sql[v] for v in changed)
    assert not any(sql[v] for v in odd)
    disagreements = {v: (sql[v], py_luhn_valid(v)) for v in values if sql[v] != py_luhn_valid(v)}
    assert disagreements == {}
    # The random digit strings hold both outcomes, so agreement is not trivial.
    assert {sql[v] for v in random_digits} == {True, False}


async def test_sql_citizen_id_valid_agrees_with_python(db: asyncpg.Connection) -> None:
    rng = random.Random(11643)
    valid = []
    for _ in range(200):
        region = f"{rng.randint(110000, 659999)}"
        birth = date(1900, 1, 1) + timedelta(days=rng.randrange(45_000))
        valid.append(make_citizen_id(region, birth, rng.randrange(1000)))
    valid += ["11010519491231002X", "440524188001010014"]
    assert any(v.endswith("X") for v in valid)
    changed = [c for v in valid for c in _one_digit_changes(v[:17], rng, 1)]
    changed = [c + v[17] for c, v in zip(changed, valid, strict=True)]
    wrong_check = [v[:17] + ("0" if v[17] == "X" else "X") for v in valid[:50]]
    odd = ["", "11010519491231002", "11010519491231002X0", "1101051949123100X2", "abc"]
    values = list(dict.fromkeys(valid + changed + wrong_check + odd))

    sql = await _sql_map(db, "citizen_id_valid", values)

    assert len(values) > 400
    assert all(sql[v] for v in valid)
    assert not any(sql[v] for v in changed)
    assert not any(sql[v] for v in wrong_check)
    assert not any(sql[v] for v in odd)
    disagreements = {
        v: (sql[v], is_valid_citizen_id(v)) for v in values if sql[v] != is_valid_citizen_id(v)
    }
    assert disagreements == {}


async def test_sql_citizen_id_valid_rejects_impossible_birth_dates(
    db: asyncpg.Connection,
) -> None:
    from pos_gateway.domain.citizen_id import check_character

    impossible = []
    for birth in ["19900230", "19901301", "19900000", "20230229"]:
        first17 = f"110105{birth}123"
        impossible.append(first17 + check_character(first17))
    assert not any(is_valid_citizen_id(v) for v in impossible)

    sql = await _sql_map(db, "citizen_id_valid", impossible)

    assert sql == dict.fromkeys(impossible, False)


# --- The journal is append-only ----------------------------------------------------------


async def _journal_line(conn: asyncpg.Connection) -> tuple[int, int]:
    account_id = await _account(conn, balance=10_000)
    entry_id = await conn.fetchval(
        """
        INSERT INTO journal (account_id, kind, amount, balance_after, reference)
        VALUES ($1, 'allocation', 10000, 10000, 'schema test') RETURNING entry_id
        """,
        account_id,
    )
    return account_id, entry_id


async def test_journal_refuses_update(tx: asyncpg.Connection) -> None:
    account_id, entry_id = await _journal_line(tx)

    for statement in [
        "UPDATE journal SET amount = 1 WHERE account_id = $1 AND entry_id = $2",
        "UPDATE journal SET reference = 'edited' WHERE account_id = $1 AND entry_id = $2",
    ]:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            async with tx.transaction():
                await tx.execute(statement, account_id, entry_id)

    row = await tx.fetchrow(
        "SELECT amount, reference FROM journal WHERE account_id = $1 AND entry_id = $2",
        account_id,
        entry_id,
    )
    assert (row["amount"], row["reference"]) == (10_000, "schema test")


async def test_journal_refuses_delete(tx: asyncpg.Connection) -> None:
    account_id, entry_id = await _journal_line(tx)

    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        async with tx.transaction():
            await tx.execute(
                "DELETE FROM journal WHERE account_id = $1 AND entry_id = $2",
                account_id,
                entry_id,
            )

    count = await tx.fetchval("SELECT count(*) FROM journal WHERE account_id = $1", account_id)
    assert count == 1


async def test_journal_refuses_truncate(tx: asyncpg.Connection) -> None:
    await _journal_line(tx)

    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        async with tx.transaction():
            await tx.execute("TRUNCATE journal")

    assert await tx.fetchval("SELECT count(*) FROM journal") >= 1


async def test_journal_accepts_appending(tx: asyncpg.Connection) -> None:
    account_id, _ = await _journal_line(tx)

    await tx.execute(
        """
        INSERT INTO journal (account_id, kind, amount, balance_after, reference)
        VALUES ($1, 'adjustment', -500, 9500, 'schema test')
        """,
        account_id,
    )

    total = await tx.fetchval("SELECT sum(amount) FROM journal WHERE account_id = $1", account_id)
    assert total == 9_500


# --- Balances and cards -----------------------------------------------------------------


async def test_account_refuses_a_negative_balance_on_insert(tx: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await _account(tx, balance=-1)


async def test_account_refuses_a_negative_balance_on_update(tx: asyncpg.Connection) -> None:
    account_id = await _account(tx, balance=100)

    with pytest.raises(asyncpg.CheckViolationError):
        async with tx.transaction():
            await tx.execute(
                "UPDATE individual_accounts SET balance = balance - 101 WHERE account_id = $1",
                account_id,
            )

    await tx.execute(
        "UPDATE individual_accounts SET balance = balance - 100 WHERE account_id = $1",
        account_id,
    )
    balance = await tx.fetchval(
        "SELECT balance FROM individual_accounts WHERE account_id = $1", account_id
    )
    assert balance == 0


async def test_people_refuse_an_invalid_ssn(tx: asyncpg.Connection) -> None:
    ssn = new_ssn()
    wrong = ssn[:17] + ("0" if ssn[17] != "0" else "1")

    with pytest.raises(asyncpg.CheckViolationError):
        await tx.execute("INSERT INTO people (ssn, name) VALUES ($1, 'Schema Test')", wrong)


async def test_cards_accept_a_luhn_valid_pan(tx: asyncpg.Connection) -> None:
    account_id = await _account(tx)
    pan = _random_pan()

    card_id = await _card(tx, account_id, pan)

    assert await tx.fetchval("SELECT pan FROM cards WHERE card_id = $1", card_id) == pan


async def test_cards_refuse_a_pan_failing_luhn(tx: asyncpg.Connection) -> None:
    account_id = await _account(tx)
    pan = _random_pan()
    wrong = pan[:-1] + str((int(pan[-1]) + 1) % 10)

    with pytest.raises(asyncpg.CheckViolationError):
        await _card(tx, account_id, wrong)


async def test_a_pan_is_checked_when_the_card_is_written_not_at_each_update(
    tx: asyncpg.Connection,
) -> None:
    """The PAN cannot change (009), so the row updates of every purchase (the PIN try, the
    good-PIN write) must not pay for luhn_valid() again (012)."""

    async def luhn_calls() -> int:
        return await tx.fetchval(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
            "WHERE funcname = 'luhn_valid'"
        )

    account_id = await _account(tx)
    await tx.execute("SET LOCAL track_functions = 'all'")
    card_id = await _card(tx, account_id, _random_pan())
    assert await luhn_calls() == 1  # counted: the insert checked it
    await tx.execute("UPDATE cards SET pin_failures = 1 WHERE card_id = $1", card_id)
    await tx.execute("UPDATE cards SET pin_failures = 0 WHERE card_id = $1", card_id)
    assert await luhn_calls() == 1


@pytest.mark.parametrize("length", [15, 12])
async def test_cards_refuse_a_luhn_valid_pan_of_the_wrong_length(
    tx: asyncpg.Connection, length: int
) -> None:
    account_id = await _account(tx)

    with pytest.raises(asyncpg.CheckViolationError):
        await _card(tx, account_id, _random_pan(length=length))


async def test_cards_refuse_pin_failures_above_three(tx: asyncpg.Connection) -> None:
    account_id = await _account(tx)
    card_id = await _card(tx, account_id, _random_pan())

    await tx.execute("UPDATE cards SET pin_failures = 3 WHERE card_id = $1", card_id)
    with pytest.raises(asyncpg.CheckViolationError):
        await tx.execute("UPDATE cards SET pin_failures = 4 WHERE card_id = $1", card_id)


# --- Migrations -------------------------------------------------------------------------


async def _migration_rows(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
    return [(r["version"], r["checksum"]) for r in rows]


async def test_every_migration_file_is_recorded(db: asyncpg.Connection) -> None:
    files = sorted(p.name for p in schema_dir().glob("[0-9][0-9][0-9]_*.sql"))

    versions = [version for version, _ in await _migration_rows(db)]

    assert files and versions == files


async def test_applying_migrations_again_applies_nothing(db: asyncpg.Connection) -> None:
    before = await _migration_rows(db)

    applied = await apply_migrations(db)

    assert applied == []
    assert await _migration_rows(db) == before


async def test_an_edited_applied_migration_is_refused(
    db: asyncpg.Connection, tmp_path: Path
) -> None:
    for path in schema_dir().glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    first = sorted(tmp_path.glob("001_*.sql"))[0]
    first.write_text(first.read_text(encoding="utf-8") + "\n-- edited\n", encoding="utf-8")
    before = await _migration_rows(db)

    with pytest.raises(MigrationError, match=first.name):
        await apply_migrations(db, tmp_path)

    assert await _migration_rows(db) == before
    # The advisory lock was released: a normal run still goes through.
    assert await apply_migrations(db) == []


async def test_unedited_copies_of_the_migrations_apply_nothing(
    db: asyncpg.Connection, tmp_path: Path
) -> None:
    for path in schema_dir().glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)

    assert await apply_migrations(db, tmp_path) == []
