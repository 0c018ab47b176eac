"""Read-side use cases of the web pages: the office's searches and lists, and the
cardholder's printable statement of a period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from pos_gateway.domain.citizen_id import InvalidCitizenId, parse_citizen_id
from pos_gateway.domain.display import day_bounds
from pos_gateway.errors import InvalidInput, NoSuchRecord
from pos_gateway.services.reports import check_limit
from pos_gateway.store import pages, people

MAX_PERIOD_DAYS = 366 * 5
LIST_LIMIT = 200


@dataclass(frozen=True, slots=True)
class PeriodStatement:
    name: str
    ssn: str
    account_id: int
    first: date
    last: date
    opening_balance: int
    closing_balance: int  # at the end of the period (not of this page)
    entries: list[dict[str, Any]]
    next_after: int | None  # entry id to continue from, when another page exists


class PageQueries:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def statement(
        self, ssn: str, first: date, last: date, after: int | None, limit: int
    ) -> PeriodStatement:
        """Allocation and consumption of [first, last] (days in Asia/Shanghai), oldest
        first, with the balances at the start and the end of the period."""
        if last < first:
            raise InvalidInput("the period ends before it starts", code="invalid_period")
        if (last - first).days > MAX_PERIOD_DAYS:
            raise InvalidInput("at most five years at a time", code="invalid_period")
        check_limit(limit)
        start, end = day_bounds(first, last)
        person = await people.person_with_account(self._pool, ssn)
        if person is None:
            raise NoSuchRecord("no such person")
        account_id = person["account_id"]
        rows = await pages.statement_period(self._pool, account_id, start, end, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return PeriodStatement(
            name=person["name"],
            ssn=ssn,
            account_id=account_id,
            first=first,
            last=last,
            opening_balance=await pages.balance_before(self._pool, account_id, start),
            closing_balance=await pages.balance_before(self._pool, account_id, end),
            entries=[dict(r) for r in rows],
            next_after=rows[-1]["entry_id"] if more else None,
        )

    async def search_people(self, query: str) -> list[dict[str, Any]]:
        """An 18-character ID number finds that person; anything else is part of a name."""
        query = query.strip()
        if not query:
            return []
        if len(query) > 100:
            raise InvalidInput("the search is too long", code="invalid_query")
        try:
            ssn = parse_citizen_id(query.upper()).number
        except InvalidCitizenId:
            ssn = None
        rows = await pages.search_people(self._pool, ssn, None if ssn else query, LIST_LIMIT)
        return [dict(r) for r in rows]

    async def merchants(self, query: str | None) -> list[dict[str, Any]]:
        rows = await pages.merchants_with_terminals(self._pool, query or None, LIST_LIMIT)
        out = []
        for r in rows:
            row = dict(r)
            row["terminals"] = [
                {"terminal_id": t.split(":")[0], "status": t.split(":")[1]} for t in r["terminals"]
            ]
            out.append(row)
        return out

    async def terminals(self, merchant_id: str | None) -> list[dict[str, Any]]:
        rows = await pages.terminals_with_last_transaction(
            self._pool, merchant_id or None, LIST_LIMIT
        )
        return [dict(r) for r in rows]

    async def employers(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await pages.employers(self._pool, LIST_LIMIT)]

    async def card(self, card_id: int) -> asyncpg.Record:
        """A card by its id (the office's forms name cards by id, not by number)."""
        card = await people.get_card_by_id(self._pool, card_id)
        if card is None:
            raise NoSuchRecord("no such card")
        return card
