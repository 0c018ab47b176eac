"""The schema can be distributed by its keys (DESIGN §6): the live catalogue, after the
migrations, is checked table by table against store/distribution.py; the checks fail on
the schema as it was before 009 and on a wrong declaration; a database holding 008's rows
migrates; verify-ledger reports a broken cross-key link."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator, Mapping
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pos_gateway.domain.cards import luhn_check_digit
from pos_gateway.services.reports import verify_ledger
from pos_gateway.store import distribution
from pos_gateway.store.distribution import LOCAL, REFERENCE, Placement
from pos_gateway.store.migrations import apply_migrations, schema_dir

from .helpers import new_ssn

NODE_BLOCK = 10 ** (12 - distribution.RRN_NODE_DIGITS)


# --- The checker: the catalogue against a declaration -------------------------------------


_TABLES = """
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
"""

_UNIQUE_INDEXES = """
SELECT t.relname AS table_name, ic.relname AS index_name, i.indisprimary AS is_primary,
       ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.n)::text[]
           AS columns
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
WHERE i.indisunique AND t.relnamespace = current_schema()::regnamespace
"""

_FOREIGN_KEYS = """
SELECT c.conname, t.relname AS table_name, p.relname AS target,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             ORDER BY k.n)::text[] AS columns,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
             ORDER BY k.n)::text[] AS target_columns
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_class p ON p.oid = c.confrelid
WHERE c.contype = 'f' AND t.relnamespace = current_schema()::regnamespace
"""

# The sequences the default of transactions.rrn draws on, with their ranges.
_RRN_SEQUENCES = """
SELECT s.sequencename, s.min_value, s.max_value, s.cycle
FROM pg_attrdef d
JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                  AND dep.refclassid = 'pg_class'::regclass
JOIN pg_class sc ON sc.oid = dep.refobjid AND sc.relkind = 'S'
JOIN pg_sequences s ON s.schemaname = current_schema() AND s.sequencename = sc.relname
WHERE d.adrelid = 'transactions'::regclass AND a.attname = 'rrn'
"""


async def placement_problems(
    conn: asyncpg.Connection, tables: Mapping[str, Placement] | None = None
) -> list[str]:
    """Every way the schema on `conn` breaks the declaration `tables` (default: the one in
    store/distribution.py). Empty: it can be distributed as declared."""
    tables = distribution.TABLES if tables is None else tables
    problems: list[str] = []
    present = {r["relname"] for r in await conn.fetch(_TABLES)}
    problems += [
        f"{t}: not declared in store/distribution.py" for t in sorted(present - set(tables))
    ]
    problems += [f"{t}: declared but absent" for t in sorted(set(tables) - present)]

    primary = set()
    for index in await conn.fetch(_UNIQUE_INDEXES):
        placement = tables.get(index["table_name"])
        if placement is None or placement.kind != "distributed":
            continue
        if index["is_primary"]:
            primary.add(index["table_name"])
        if placement.key not in index["columns"]:
            what = "primary key" if index["is_primary"] else "unique index"
            problems.append(
                f"{index['table_name']}: {what} {index['index_name']} "
                f"({', '.join(index['columns'])}) lacks the key {placement.key}"
            )
    problems += [
        f"{t}: distributed without a primary key"
        for t, p in sorted(tables.items())
        if p.kind == "distributed" and t in present and t not in primary
    ]

    for fk in await conn.fetch(_FOREIGN_KEYS):
        child, parent = tables.get(fk["table_name"]), tables.get(fk["target"])
        if child is None or parent is None:
            continue  # reported as undeclared
        where = f"{fk['table_name']} -> {fk['target']} ({fk['conname']})"
        if parent.kind == "reference":
            continue
        if parent.kind == "local":
            if child.kind != "local":
                problems.append(f"{where}: a {child.kind} table refers to a local one")
            continue
        if child.kind != "distributed":
            problems.append(f"{where}: a {child.kind} table refers to a distributed one")
        elif child.key != parent.key:
            problems.append(f"{where}: crosses keys ({child.key} to {parent.key}); make it a Link")
        elif (child.key, parent.key) not in zip(fk["columns"], fk["target_columns"], strict=True):
            problems.append(f"{where}: not co-located, {child.key} is not in it on both sides")

    sequences = await conn.fetch(_RRN_SEQUENCES)
    if [s["sequencename"] for s in sequences] != [distribution.RRN_SEQUENCE]:
        names = [s["sequencename"] for s in sequences]
        problems.append(f"transactions.rrn: default draws on {names}, not on this node's sequence")
    for s in sequences:
        blocks = s["max_value"] // NODE_BLOCK - s["min_value"] // NODE_BLOCK + 1
        if blocks != 1 or s["cycle"]:
            problems.append(
                f"transactions.rrn: {s['sequencename']} spans {blocks} node numbers"
                f"{' and cycles' if s['cycle'] else ''}: a global sequence"
            )
    return problems


# --- The live schema ----------------------------------------------------------------------


async def test_every_table_is_placed_as_declared(db: asyncpg.Connection) -> None:
    assert await placement_problems(db) == []


async def test_the_declaration_covers_the_purchase_path_as_designed() -> None:
    tables = distribution.TABLES
    by_account = {t for t, p in tables.items() if p.key == "account_id"}
    by_terminal = {t for t, p in tables.items() if p.key == "terminal_id"}
    assert {"individual_accounts", "cards", "journal", "settlement_splits", "settlement_lines",
            "fund_journal", "fund_accumulators", "allocations"} <= by_account  # fmt: skip
    assert {"terminals", "transactions", "batches"} <= by_terminal
    assert tables["merchants"] == tables["catalogue_items"] == REFERENCE
    # Every link joins tables that exist and are declared.
    for link in distribution.LINKS:
        assert {link.table, link.target} <= set(tables), link.name


async def test_a_new_table_without_a_declaration_fails(db: asyncpg.Connection) -> None:
    async with db.transaction():
        await db.execute("CREATE TABLE surprise (id bigint PRIMARY KEY)")
        problems = await placement_problems(db)
        await db.execute("DROP TABLE surprise")

    assert problems == ["surprise: not declared in store/distribution.py"]


@pytest.mark.parametrize(
    ("table", "placement", "expected"),
    [
        # Distributed by the wrong key: its primary key and its foreign keys say so.
        ("journal", Placement("distributed", "terminal_id"),
         "journal: primary key journal_pkey (account_id, entry_id) lacks the key terminal_id"),
        # A reference table referring to a distributed one.
        ("cards", REFERENCE, "cards -> individual_accounts (cards_account_id_fkey): "
                             "a reference table refers to a distributed one"),
        # The accounts kept local: every money table refers to a local table.
        ("individual_accounts", LOCAL, "journal -> individual_accounts (journal_account_id_fkey)"
                                       ": a distributed table refers to a local one"),
        # Terminals distributed by merchant: transactions' key to it crosses keys.
        ("terminals", Placement("distributed", "merchant_id"),
         "transactions -> terminals (transactions_terminal_id_fkey): crosses keys "
         "(terminal_id to merchant_id); make it a Link"),
    ],
)  # fmt: skip
async def test_a_wrong_declaration_fails(
    db: asyncpg.Connection, table: str, placement: Placement, expected: str
) -> None:
    tables = {**distribution.TABLES, table: placement}

    assert expected in await placement_problems(db, tables)


async def test_a_foreign_key_without_the_key_on_both_sides_fails(tx: asyncpg.Connection) -> None:
    await tx.execute(
        """
        ALTER TABLE fund_journal ADD CONSTRAINT fund_journal_wrong_fkey
            FOREIGN KEY (purchase_id, account_id)
            REFERENCES settlement_splits (transaction_id, account_id)
        """
    )
    await tx.execute("ALTER TABLE settlement_lines ADD COLUMN other_account bigint")
    await tx.execute(
        """
        ALTER TABLE settlement_lines ADD CONSTRAINT settlement_lines_wrong_fkey
            FOREIGN KEY (transaction_id, other_account)
            REFERENCES settlement_splits (transaction_id, account_id)
        """
    )
    await tx.execute("CREATE UNIQUE INDEX journal_wrong_idx ON journal (entry_id)")

    problems = await placement_problems(tx)

    assert sorted(problems) == [
        "journal: unique index journal_wrong_idx (entry_id) lacks the key account_id",
        "settlement_lines -> settlement_splits (settlement_lines_wrong_fkey): not co-located, "
        "account_id is not in it on both sides",
    ]


# --- RRNs without a global sequence --------------------------------------------------------


@pytest.fixture
async def tx(db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """The db connection inside a transaction that is always rolled back."""
    transaction = db.transaction()
    await transaction.start()
    try:
        yield db
    finally:
        await transaction.rollback()


async def test_an_rrn_starts_with_the_node_number(tx: asyncpg.Connection) -> None:
    assert await tx.fetchval("SELECT rrn_node()") == 0

    await tx.execute("SELECT set_rrn_node(42)")
    rrns = [
        await tx.fetchval("SELECT lpad(nextval('rrn_node_seq')::text, 12, '0')") for _ in range(3)
    ]

    assert await tx.fetchval("SELECT rrn_node()") == 42
    assert rrns == ["420000000001", "420000000002", "420000000003"]


async def test_a_node_whose_range_is_used_up_fails_rather_than_repeat(
    tx: asyncpg.Connection,
) -> None:
    await tx.execute("SELECT set_rrn_node(41)")
    await tx.execute("SELECT setval('rrn_node_seq', 419999999999)")

    with pytest.raises(asyncpg.SequenceGeneratorLimitExceededError, match="maximum value"):
        async with tx.transaction():
            await tx.fetchval("SELECT nextval('rrn_node_seq')")


async def test_a_node_number_already_used_here_is_refused(tx: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.RaiseError, match="node 0 were given here already"):
        async with tx.transaction():
            await tx.execute(
                "INSERT INTO merchants (merchant_id, name, kind, designated_from, designated_until)"
                " VALUES ('RRNTEST00000001', 'RRN test', 'pharmacy', current_date, current_date)"
            )
            await tx.execute(
                "INSERT INTO terminals (terminal_id, merchant_id, mac_key_wrapped, pin_key_wrapped)"
                " VALUES ('RRNTEST1', 'RRNTEST00000001', '\\x00', '\\x00')"
            )
            await tx.execute(
                "INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,"
                " merchant_id, response_code) VALUES ('RRNTEST1', current_date, '000001', '',"
                " 'blocked', 'RRNTEST00000001', '12')"
            )
            await tx.execute("SELECT set_rrn_node(0)")
    with pytest.raises(asyncpg.RaiseError, match=r"0\.\.99"):
        await tx.execute("SELECT set_rrn_node(100)")


# --- Before 009, and a database of 008 migrated ------------------------------------------


def _admin_dsn(database_url: str) -> str:
    return urlunsplit(urlsplit(database_url)._replace(path="/postgres"))


@pytest.fixture
async def database_at_008(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[asyncpg.Connection, Path]]:
    """A fresh database migrated up to 008 only, and a copy of schema/ to finish with."""
    migrations = tmp_path / "schema"
    migrations.mkdir()
    for path in schema_dir().glob("[0-9][0-9][0-9]_*.sql"):
        shutil.copy(path, migrations / path.name)
    up_to_008 = tmp_path / "schema_008"
    up_to_008.mkdir()
    for path in migrations.glob("*.sql"):
        if path.name < "009":
            shutil.copy(path, up_to_008 / path.name)

    name = f"pos_test_008_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_admin_dsn(database_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(urlunsplit(urlsplit(database_url)._replace(path=f"/{name}")))
    try:
        await apply_migrations(conn, up_to_008)
        yield conn, migrations
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_schema_before_009_could_not_be_distributed(
    database_at_008: tuple[asyncpg.Connection, Path],
) -> None:
    conn, _ = database_at_008
    before_009 = {t: p for t, p in distribution.TABLES.items() if t != "card_numbers"}
    before_009.pop("account_holders")

    problems = await placement_problems(conn, before_009)

    for expected in [
        "transactions: unique index transactions_rrn_key (rrn) lacks the key terminal_id",
        "transactions: unique index transactions_transaction_id_key (transaction_id) lacks the "
        "key terminal_id",
        "cards: unique index cards_pan_key (pan) lacks the key account_id",
        "individual_accounts: unique index individual_accounts_ssn_key (ssn) lacks the key "
        "account_id",
        "journal -> transactions (journal_transaction_id_fkey): crosses keys "
        "(account_id to terminal_id); make it a Link",
        "settlement_lines: primary key settlement_lines_pkey (transaction_id, line_no) lacks "
        "the key account_id",
        "individual_accounts -> people (individual_accounts_ssn_fkey): a distributed table "
        "refers to a local one",
        "transactions.rrn: default draws on ['rrn_seq'], not on this node's sequence",
        "transactions.rrn: rrn_seq spans 100 node numbers: a global sequence",
    ]:
        assert expected in problems


def _pan(prefix: str) -> str:
    partial = prefix + "".join(secrets.choice("0123456789") for _ in range(18 - len(prefix)))
    return partial + luhn_check_digit(partial)


async def _rows_of_008(conn: asyncpg.Connection) -> dict[str, object]:
    """A person with a card, a purchase and its refund, an itemised purchase with its fund
    line, an allocation: rows as 008's writers left them."""
    ssn = new_ssn()
    today = date.today()
    month = today.replace(day=1)
    await conn.execute("INSERT INTO people (ssn, name) VALUES ($1, 'Before 009')", ssn)
    account_id = await conn.fetchval(
        "INSERT INTO individual_accounts (ssn, balance) VALUES ($1, 0) RETURNING account_id", ssn
    )
    pan = _pan("99")
    card_id = await conn.fetchval(
        "INSERT INTO cards (pan, account_id, expires_on, pin_hash) VALUES ($1, $2, $3, 'x')"
        " RETURNING card_id",
        pan, account_id, today + timedelta(days=365),
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO contributions (ssn, month, employer_part, individual_part)"
        " VALUES ($1, $2, 6000, 4000)",
        ssn,
        month,
    )
    await conn.execute(
        "INSERT INTO allocations (account_id, month, ssn, employer_part, individual_part, amount)"
        " VALUES ($1, $2, $3, 6000, 4000, 10000)",
        account_id, month, ssn,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO journal (account_id, kind, amount, balance_after, reference)"
        " VALUES ($1, 'allocation', 10000, 10000, $2)",
        account_id, f"allocation {month:%Y-%m}",
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO merchants (merchant_id, name, kind, designated_from, designated_until)"
        " VALUES ('MIGRATE00000001', 'Before 009', 'pharmacy', $1, $2)",
        today - timedelta(days=1), today + timedelta(days=365),
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO terminals (terminal_id, merchant_id, mac_key_wrapped, pin_key_wrapped)"
        " VALUES ('MIGRATE1', 'MIGRATE00000001', '\\x00', '\\x00')"
    )
    await conn.execute("INSERT INTO catalogue_items (code, name, category) VALUES ('A1', 'A', 'A')")

    async def transaction(stan: str, txn_type: str, amount: int, balance: int, **more) -> dict:
        row = await conn.fetchrow(
            """
            INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                                      merchant_id, card_id, account_id, amount, balance,
                                      response_code, auth_code, original_transaction_id,
                                      refunded_amount)
            VALUES ('MIGRATE1', $1, $2, '', $3, 'MIGRATE00000001', $4, $5, $6, $7, '00',
                    '123456', $8, $9)
            RETURNING transaction_id, rrn
            """,
            today, stan, txn_type, card_id, account_id, amount, balance,
            more.get("original"), more.get("refunded", 0),
        )  # fmt: skip
        return dict(row)

    purchase = await transaction("000001", "purchase", 3000, 7000, refunded=1000)
    refund = await transaction("000002", "refund", 1000, 8000, original=purchase["transaction_id"])
    itemised = await transaction("000003", "purchase", 2000, 6000)
    for line in [
        (-3000, 7000, purchase["transaction_id"]),
        (1000, 8000, refund["transaction_id"]),
        (-2000, 6000, itemised["transaction_id"]),
    ]:
        await conn.execute(
            "INSERT INTO journal (account_id, kind, amount, balance_after, transaction_id,"
            " terminal_id, merchant_id)"
            " VALUES ($1, CASE WHEN $2 < 0 THEN 'purchase' ELSE 'refund' END, $2, $3, $4,"
            " 'MIGRATE1', 'MIGRATE00000001')",
            account_id, *line,
        )  # fmt: skip
    await conn.execute("UPDATE individual_accounts SET balance = 6000 WHERE account_id = $1",
                       account_id)  # fmt: skip
    await conn.execute(
        "INSERT INTO settlement_splits (transaction_id, account_id, ssn, year, merchant_id,"
        " business_date, total, eligible, deductible_applied, fund, account, cash, covered)"
        " VALUES ($1, $2, $3, $4, 'MIGRATE00000001', $5, 2500, 2500, 0, 500, 2000, 0, true)",
        itemised["transaction_id"], account_id, ssn, today.year, today,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO settlement_lines (transaction_id, line_no, account_id, code, category,"
        " self_pay_bp, quantity, unit_price, eligible)"
        " VALUES ($1, 1, $2, 'A1', 'A', 0, 1, 2500, 2500)",
        itemised["transaction_id"], account_id,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO fund_journal (account_id, ssn, merchant_id, local_date, kind, amount,"
        " purchase_id, transaction_id)"
        " VALUES ($1, $2, 'MIGRATE00000001', $3, 'purchase', 500, $4, $4)",
        account_id, ssn, today, itemised["transaction_id"],
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO fund_accumulators (ssn, year, deductible_used, fund_used)"
        " VALUES ($1, $2, 0, 500)",
        ssn, today.year,
    )  # fmt: skip
    return {"ssn": ssn, "account_id": account_id, "card_id": card_id, "pan": pan,
            "last_rrn": itemised["rrn"], "purchase_rrn": purchase["rrn"]}  # fmt: skip


async def test_a_database_holding_rows_of_008_migrates(
    database_at_008: tuple[asyncpg.Connection, Path],
) -> None:
    conn, migrations = database_at_008
    rows = await _rows_of_008(conn)

    applied = await apply_migrations(conn, migrations)

    assert applied == sorted(p.name for p in migrations.glob("*.sql") if p.name >= "009")
    assert applied[0] == "009_distribution_keys.sql"

    assert await placement_problems(conn) == []
    report = await verify_ledger(conn)
    assert report["ok"], report["problems"]
    assert await conn.fetchrow(
        "SELECT account_id, card_id FROM card_numbers WHERE pan = $1", rows["pan"]
    ) == (rows["account_id"], rows["card_id"])
    assert (
        await conn.fetchval("SELECT account_id FROM account_holders WHERE ssn = $1", rows["ssn"])
        == rows["account_id"]
    )
    assert (
        await conn.fetchval("SELECT account_id FROM fund_accumulators WHERE ssn = $1", rows["ssn"])
        == rows["account_id"]
    )
    # The old RRNs are still found; the next one follows them on node 00.
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE rrn = $1", rows["purchase_rrn"]
        )
        == 1
    )
    following = await conn.fetchval("SELECT lpad(nextval('rrn_node_seq')::text, 12, '0')")
    assert following == f"{int(str(rows['last_rrn'])) + 1:012d}"
    assert following.startswith("00")


# --- verify-ledger reports a broken link --------------------------------------------------


async def _ledger_of_one_card(conn: asyncpg.Connection) -> dict[str, object]:
    """A card, a terminal and an approved purchase with its journal line, written as the
    gateway writes them (inside the caller's rolled-back transaction)."""
    ssn = new_ssn()
    today = date.today()
    await conn.execute("INSERT INTO people (ssn, name) VALUES ($1, 'Link test')", ssn)
    account_id = await conn.fetchval(
        "INSERT INTO individual_accounts (ssn, balance) VALUES ($1, 0) RETURNING account_id", ssn
    )
    card_id = await conn.fetchval(
        "INSERT INTO cards (pan, account_id, expires_on, pin_hash) VALUES ($1, $2, $3, 'x')"
        " RETURNING card_id",
        _pan("98"), account_id, today + timedelta(days=365),
    )  # fmt: skip
    merchant_id = "LINK" + secrets.token_hex(6).upper()[:11]
    terminal_id = "L" + secrets.token_hex(4).upper()[:7]
    await conn.execute(
        "INSERT INTO merchants (merchant_id, name, kind, designated_from, designated_until)"
        " VALUES ($1, 'Link test', 'pharmacy', $2, $2)",
        merchant_id, today,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO terminals (terminal_id, merchant_id, mac_key_wrapped, pin_key_wrapped)"
        " VALUES ($1, $2, '\\x00', '\\x00')",
        terminal_id, merchant_id,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO journal (account_id, kind, amount, balance_after, reference)"
        " VALUES ($1, 'allocation', 5000, 5000, 'opening')",
        account_id,
    )
    transaction_id = await conn.fetchval(
        """
        INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,
                                  merchant_id, card_id, account_id, amount, balance,
                                  response_code, auth_code)
        VALUES ($1, $2, '000001', '', 'purchase', $3, $4, $5, 1000, 4000, '00', '123456')
        RETURNING transaction_id
        """,
        terminal_id, today, merchant_id, card_id, account_id,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO journal (account_id, kind, amount, balance_after, transaction_id,"
        " terminal_id, merchant_id) VALUES ($1, 'purchase', -1000, 4000, $2, $3, $4)",
        account_id, transaction_id, terminal_id, merchant_id,
    )  # fmt: skip
    await conn.execute(
        "UPDATE individual_accounts SET balance = 4000 WHERE account_id = $1", account_id
    )
    return {"account_id": account_id, "card_id": card_id, "transaction_id": transaction_id,
            "terminal_id": terminal_id, "ssn": ssn}  # fmt: skip


@pytest.mark.parametrize(
    ("breakage", "argument", "expected"),
    [
        # The journal line names a transaction that is not there.
        ("UPDATE transactions SET transaction_id = gen_random_uuid() WHERE transaction_id = $1",
         "transaction_id", "journal_line_without_its_transaction"),
        # The transaction names a card that is not there.
        ("UPDATE transactions SET card_id = card_id + 1000000000 WHERE transaction_id = $1",
         "transaction_id", "transaction_card_not_on_its_account"),
        # A refund of an original that is not there.
        ("UPDATE transactions SET original_transaction_id = gen_random_uuid()"
         " WHERE transaction_id = $1", "transaction_id", "transaction_without_its_original"),
        # The PAN's route points at another card.
        ("UPDATE card_numbers SET card_id = card_id + 1000000000 WHERE card_id = $1",
         "card_id", "card_number_without_its_card"),
        # The ID number's account is another one.
        ("UPDATE account_holders SET account_id = account_id + 1000000000"
         " WHERE account_id = $1", "account_id", "holder_without_its_account"),
        # Two transactions of the terminal share an RRN.
        ("UPDATE transactions SET rrn = (SELECT rrn FROM transactions"
         "  WHERE terminal_id = $1 AND stan = '000001')"
         " WHERE terminal_id = $1 AND stan = '000002'", "terminal_id", "rrn_given_twice"),
    ],
)  # fmt: skip
async def test_verify_ledger_reports_a_broken_link(
    tx: asyncpg.Connection, breakage: str, argument: str, expected: str
) -> None:
    rows = await _ledger_of_one_card(tx)
    await tx.execute(
        "INSERT INTO transactions (terminal_id, local_date, stan, request_hash, txn_type,"
        " merchant_id, response_code) SELECT $1, current_date, '000002', '', 'blocked',"
        " merchant_id, '12' FROM terminals WHERE terminal_id = $1",
        rows["terminal_id"],
    )
    before = await verify_ledger(tx)
    assert before["ok"], before["problems"]

    await tx.execute(breakage, rows[argument])

    after = await verify_ledger(tx)
    assert not after["ok"]
    assert expected in after["problems"]


async def test_a_duplicate_pan_is_refused_by_its_number(tx: asyncpg.Connection) -> None:
    rows = await _ledger_of_one_card(tx)
    pan = await tx.fetchval("SELECT pan FROM cards WHERE card_id = $1", rows["card_id"])

    with pytest.raises(asyncpg.UniqueViolationError) as refused:
        async with tx.transaction():
            await tx.execute(
                "INSERT INTO cards (pan, account_id, expires_on, pin_hash)"
                " VALUES ($1, $2, current_date, 'x')",
                pan, rows["account_id"],
            )  # fmt: skip
    assert refused.value.constraint_name == "card_numbers_pkey"


async def test_a_second_account_for_a_person_is_refused(tx: asyncpg.Connection) -> None:
    rows = await _ledger_of_one_card(tx)

    with pytest.raises(asyncpg.UniqueViolationError) as refused:
        async with tx.transaction():
            await tx.execute("INSERT INTO individual_accounts (ssn) VALUES ($1)", rows["ssn"])
    assert refused.value.constraint_name == "account_holders_pkey"


async def test_a_card_keeps_its_number_and_account(tx: asyncpg.Connection) -> None:
    rows = await _ledger_of_one_card(tx)

    with pytest.raises(asyncpg.CheckViolationError, match="do not change"):
        async with tx.transaction():
            await tx.execute(
                "UPDATE cards SET pan = $2 WHERE card_id = $1", rows["card_id"], _pan("97")
            )
