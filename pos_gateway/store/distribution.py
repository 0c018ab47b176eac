"""Where each table would live in a distributed (Citus-style) deployment: the one
declaration, checked against the live catalogue by tests/test_distribution_keys.py.

- ``distributed`` by a key column: sharded by its hash. Tables distributed by the same
  column are co-located (an account's rows, or a terminal's, share one shard). The key is
  in the primary key and in every unique constraint; a foreign key to another distributed
  table carries the key on both sides.
- ``reference``: small, rarely written, copied to every node; any table may refer to it,
  it refers to no distributed one.
- ``local``: kept on the coordinator. The person side (everything keyed by the ID number)
  and the office's own tables: written at the pace of counters and allocation runs, read
  by terminals only for an itemised purchase's coverage. Local and distributed tables do
  not refer to each other by foreign key.

A reference that crosses placements is a plain column named in LINKS, which
`pos-gateway verify-ledger` checks (reports.ledger_problems).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Placement:
    kind: Literal["distributed", "reference", "local"]
    key: str | None = None  # the distribution column of a distributed table

    def __post_init__(self) -> None:
        if (self.kind == "distributed") != (self.key is not None):
            raise ValueError("a distributed table names its key; no other table has one")


def _by(key: str) -> Placement:
    return Placement("distributed", key)


REFERENCE = Placement("reference")
LOCAL = Placement("local")

TABLES: dict[str, Placement] = {
    # The money side, by account: an account's balance, cards, journal, allocations and
    # settlement rows on one shard, so a debit and its lines are one shard's business.
    "individual_accounts": _by("account_id"),
    "cards": _by("account_id"),
    "journal": _by("account_id"),
    "allocations": _by("account_id"),
    "fund_accumulators": _by("account_id"),  # a person has one account
    "settlement_splits": _by("account_id"),
    "settlement_lines": _by("account_id"),
    "fund_journal": _by("account_id"),
    # The terminal side, by terminal: the idempotency record and its batch, and the
    # terminal row itself, which every transaction locks (its batch number) and every batch
    # close writes. As a reference table each close would be a write on every node and each
    # purchase a lock on a replicated row; by terminal_id all three stay on one shard.
    "terminals": _by("terminal_id"),
    "transactions": _by("terminal_id"),
    "batches": _by("terminal_id"),
    # Lookup tables keyed by what must stay unique across shards.
    "card_numbers": _by("pan"),  # PAN -> account and card, filled by a trigger on cards
    # Reference: the rules and the merchants every purchase reads.
    "merchants": REFERENCE,
    "catalogue_items": REFERENCE,
    "settlement_policies": REFERENCE,
    # Local: the person side and the office.
    "people": LOCAL,
    "account_holders": LOCAL,  # ID number -> account, filled by a trigger on accounts
    "contributions": LOCAL,
    "employers": LOCAL,
    "employments": LOCAL,
    "suspensions": LOCAL,
    "cardholder_credentials": LOCAL,
    "cardholder_sessions": LOCAL,
    "login_throttle": LOCAL,
    "operator_login_throttle": LOCAL,
    "audit_log": LOCAL,
    "operators": LOCAL,
    "operator_roles": LOCAL,
    "operator_sessions": LOCAL,
    "schema_migrations": LOCAL,  # per node: each node is migrated
}

# The RRN's leading digits: the number of the node that gave it (schema/009).
RRN_NODE_DIGITS = 2
RRN_SEQUENCE = "rrn_node_seq"


@dataclass(frozen=True, slots=True)
class Link:
    """Rows of `table` whose `columns` are set (the first one not null) must find a row of
    `target` with equal `target_columns`: a foreign key no shard can check."""

    name: str
    table: str
    columns: tuple[str, ...]
    target: str
    target_columns: tuple[str, ...]

    def check_sql(self) -> str:
        """The offending rows. Identifiers only from the declarations below."""
        shown = ", ".join(f"c.{c}" for c in self.columns)
        same = " AND ".join(
            f"p.{t} = c.{c}" for c, t in zip(self.columns, self.target_columns, strict=True)
        )
        return (
            f"SELECT {shown} FROM {self.table} c WHERE c.{self.columns[0]} IS NOT NULL"
            f" AND NOT EXISTS (SELECT 1 FROM {self.target} p WHERE {same})"
        )


LINKS: tuple[Link, ...] = (
    # A journal line of a transaction is on that transaction's account.
    Link("journal_line_without_its_transaction", "journal",
         ("transaction_id", "account_id"), "transactions", ("transaction_id", "account_id")),
    Link("transaction_card_not_on_its_account", "transactions",
         ("card_id", "account_id"), "cards", ("card_id", "account_id")),
    Link("transaction_without_its_account", "transactions",
         ("account_id",), "individual_accounts", ("account_id",)),
    Link("transaction_without_its_original", "transactions",
         ("original_transaction_id",), "transactions", ("transaction_id",)),
    Link("split_without_its_purchase", "settlement_splits",
         ("transaction_id", "account_id"), "transactions", ("transaction_id", "account_id")),
    Link("split_undone_by_no_transaction", "settlement_splits",
         ("undone_by", "account_id"), "transactions", ("transaction_id", "account_id")),
    Link("fund_line_without_its_transaction", "fund_journal",
         ("transaction_id", "account_id"), "transactions", ("transaction_id", "account_id")),
    Link("allocation_without_its_contribution", "allocations",
         ("ssn", "month"), "contributions", ("ssn", "month")),
    # The lookup tables agree with the tables they index, both ways.
    Link("card_without_its_number", "cards",
         ("pan", "account_id", "card_id"), "card_numbers", ("pan", "account_id", "card_id")),
    Link("card_number_without_its_card", "card_numbers",
         ("pan", "account_id", "card_id"), "cards", ("pan", "account_id", "card_id")),
    Link("account_without_its_holder", "individual_accounts",
         ("ssn", "account_id"), "account_holders", ("ssn", "account_id")),
    Link("holder_without_its_account", "account_holders",
         ("ssn", "account_id"), "individual_accounts", ("ssn", "account_id")),
)  # fmt: skip

# Uniqueness that no constraint can keep across shards, checked like the links.
UNIQUENESS_CHECKS: dict[str, str] = {
    "rrn_given_twice": """
        SELECT rrn, count(*) AS transactions FROM transactions
        GROUP BY rrn HAVING count(*) > 1
    """,
    "transaction_id_given_twice": """
        SELECT transaction_id, count(*) AS transactions FROM transactions
        GROUP BY transaction_id HAVING count(*) > 1
    """,
}


def link_checks() -> dict[str, str]:
    """verify-ledger's checks of the links and of cross-shard uniqueness."""
    return {**{link.name: link.check_sql() for link in LINKS}, **UNIQUENESS_CHECKS}
