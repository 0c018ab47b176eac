"""The insurance side: employers and employments, suspension, coverage (eligibility),
payment notices, and the monthly allocation run."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import structlog

from pos_gateway.domain.audit import CARDHOLDER, SYSTEM_ACTOR, Actor
from pos_gateway.domain.cards import last_day_of_month
from pos_gateway.domain.citizen_id import parse_citizen_id
from pos_gateway.domain.contributions import (
    EMPLOYER_SHARE_PERCENT,
    allocation_amount,
    allocation_reference,
    notice_lines,
)
from pos_gateway.domain.coverage import Suspension, coverage_on, earliest_suspension_month
from pos_gateway.domain.employment import (
    EMPLOYEE,
    FLEXIBLE,
    REGISTRATION_DEADLINE_DAYS,
    days_to_register,
    employer_id_valid,
    employment_covers,
    make_employer_id,
    old_enough_to_work,
    registration_late,
)
from pos_gateway.domain.months import (
    add_months,
    format_month,
    month_count,
    month_of,
    months_from_to,
)
from pos_gateway.errors import ConflictsWithRecord, InvalidInput, NoSuchRecord
from pos_gateway.services.admin import checked_ssn
from pos_gateway.services.reports import check_limit, cut_page, decode_cursor
from pos_gateway.store import audit, insurance, people

log = structlog.get_logger("pos_gateway.insurance")

ALLOCATION_BATCH = 1000  # accounts per transaction of the allocation run
MAX_NOTICE_MONTHS = 120
MAX_REPORT_LINES = 1000
DEFAULT_NOTICE_MONTHS = 12
_USCC_BODY_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


@dataclass(frozen=True, slots=True)
class MonthRange:
    first: date
    last: date


class InsuranceService:
    def __init__(self, pool: asyncpg.Pool, today: Callable[[], date]) -> None:
        self._pool = pool
        self._today = today

    def current_month(self) -> date:
        return month_of(self._today())

    def month_range(self, first: date | None, last: date | None) -> MonthRange:
        """Default: the twelve months ending with the current one."""
        last = month_of(last) if last is not None else self.current_month()
        first = (
            month_of(first) if first is not None else add_months(last, 1 - DEFAULT_NOTICE_MONTHS)
        )
        if first > last:
            raise InvalidInput("from is after to", code="invalid_period")
        if month_count(first, last) > MAX_NOTICE_MONTHS:
            raise InvalidInput(f"at most {MAX_NOTICE_MONTHS} months", code="invalid_period")
        return MonthRange(first, last)

    # Employers and employments ------------------------------------------------------

    async def register_employer(
        self, name: str, employer_id: str | None = None, *, actor: Actor = SYSTEM_ACTOR
    ) -> dict[str, Any]:
        if employer_id is not None and not employer_id_valid(employer_id):
            raise InvalidInput(
                "employer_id must be a unified social credit code (GB 32100: 18 characters, "
                "valid check character)",
                code="invalid_employer_id",
            )
        async with self._pool.acquire() as conn:
            for _ in range(5):
                code = employer_id or _draw_employer_id()
                async with conn.transaction():
                    row = await insurance.insert_employer(conn, code, name)
                    if row is not None:
                        await audit.record(
                            conn, actor, "employer.registered", "employer", code, {"name": name}
                        )
                if row is not None:
                    break
                if employer_id is not None:
                    raise ConflictsWithRecord("an employer with this code is registered")
            else:  # pragma: no cover - 5 collisions in a 31^9 space
                raise ConflictsWithRecord("could not draw a free employer code")
        return _employer_json(row)

    async def employer(self, employer_id: str) -> dict[str, Any]:
        row = await insurance.get_employer(self._pool, employer_id)
        if row is None:
            raise NoSuchRecord("no such employer")
        return _employer_json(row)

    async def register_employment(
        self,
        ssn: str,
        employer_id: str | None,
        hired_on: date,
        *,
        actor: Actor = SYSTEM_ACTOR,
    ) -> dict[str, Any]:
        """An employee registered by (or for) the employer, or without employer a flexibly
        employed person. Accepted when late, and flagged so (art. 58: 30 days)."""
        ssn = checked_ssn(ssn)
        kind = EMPLOYEE if employer_id is not None else FLEXIBLE
        registered_on = self._today()
        if hired_on > registered_on:
            raise InvalidInput("hired_on is in the future", code="invalid_hired_on")
        if not old_enough_to_work(parse_citizen_id(ssn).birth_date, hired_on):
            raise InvalidInput("the person was under 16 on hired_on", code="invalid_hired_on")
        late = registration_late(kind, hired_on, registered_on)
        async with self._pool.acquire() as conn, conn.transaction():
            if await people.get_person(conn, ssn) is None:
                raise NoSuchRecord("no such person")
            if employer_id is not None and await insurance.get_employer(conn, employer_id) is None:
                raise NoSuchRecord("no such employer")
            try:
                async with conn.transaction():
                    row = await insurance.insert_employment(
                        conn,
                        ssn=ssn,
                        employer_id=employer_id,
                        kind=kind,
                        hired_on=hired_on,
                        registered_on=registered_on,
                        late=late,
                        registered_by="cardholder" if actor.kind == CARDHOLDER else "operator",
                    )
            except asyncpg.UniqueViolationError:
                what = (
                    "an open employment with this employer"
                    if employer_id
                    else ("an open flexible-employment registration")
                )
                raise ConflictsWithRecord(
                    f"the person already has {what}", code="employment_open"
                ) from None
            await audit.record(
                conn,
                actor,
                "employment.registered",
                "employment",
                str(row["employment_id"]),
                {
                    "ssn": ssn,
                    "employer_id": employer_id,
                    "kind": kind,
                    "hired_on": hired_on,
                    "late_registration": late,
                },
            )
        if late:
            log.info(
                "late_registration",
                ssn=ssn,
                employer_id=employer_id,
                days=days_to_register(hired_on, registered_on),
            )
        return _employment_json(row)

    async def end_employment(
        self, employment_id: int, ended_on: date, *, actor: Actor = SYSTEM_ACTOR
    ) -> dict[str, Any]:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await insurance.get_employment(conn, employment_id)
            if row is None:
                raise NoSuchRecord("no such employment")
            if row["ended_on"] is not None:
                raise ConflictsWithRecord(
                    "the employment has already ended", code="employment_ended"
                )
            if ended_on < row["hired_on"]:
                raise InvalidInput("ended_on is before hired_on", code="invalid_ended_on")
            await insurance.end_employment(conn, employment_id, ended_on)
            await audit.record(
                conn,
                actor,
                "employment.ended",
                "employment",
                str(employment_id),
                {"ssn": row["ssn"], "ended_on": ended_on},
            )
            row = await insurance.get_employment(conn, employment_id)
        return _employment_json(row)

    async def late_registrations(
        self, first: date | None, last: date | None, employer_id: str | None
    ) -> dict[str, Any]:
        """Late registrations by registration date; default: the current month."""
        month = self.current_month()
        first = first or month
        last = last or last_day_of_month(month.year, month.month)
        if first > last:
            raise InvalidInput("from is after to", code="invalid_period")
        rows = await insurance.late_registrations(self._pool, first, last, employer_id)
        return {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "deadline_days": REGISTRATION_DEADLINE_DAYS,
            "registrations": [_employment_json(r) for r in rows],
        }

    # Suspension -----------------------------------------------------------------------

    async def declare_suspension(
        self, ssn: str, from_month: date, *, actor: Actor = SYSTEM_ACTOR
    ) -> dict[str, Any]:
        """Stop contributions from `from_month` on (online by the cardholder, or at a
        counter). Not before the current month, nor over a month already paid."""
        ssn = checked_ssn(ssn)
        from_month = month_of(from_month)
        async with self._pool.acquire() as conn, conn.transaction():
            if await insurance.lock_person(conn, ssn) is None:
                raise NoSuchRecord("no such person")
            earliest = earliest_suspension_month(
                self.current_month(), await insurance.last_contribution_month(conn, ssn)
            )
            if from_month < earliest:
                raise ConflictsWithRecord(
                    f"a suspension can start from {format_month(earliest)} at the earliest "
                    "(not in the past, nor over a month already paid)",
                    code="invalid_suspension_month",
                )
            try:
                async with conn.transaction():
                    row = await insurance.insert_suspension(
                        conn,
                        ssn,
                        from_month,
                        "cardholder" if actor.kind == CARDHOLDER else "operator",
                    )
            except asyncpg.UniqueViolationError:
                raise ConflictsWithRecord(
                    "insurance is already suspended", code="already_suspended"
                ) from None
            await audit.record(
                conn,
                actor,
                "insurance.suspension_declared",
                "person",
                ssn,
                {"from_month": format_month(from_month)},
            )
            suspensions = await insurance.suspensions_of(conn, ssn)
        return {
            "ssn": ssn,
            "from_month": format_month(from_month),
            "declared_at": row["declared_at"].isoformat(),
            "contributions_accepted_until": format_month(add_months(from_month, -1)),
            "suspensions": [_suspension_json(s) for s in suspensions],
            "note": (
                "contributions stop from this month; pooled-fund coverage follows the rule "
                "(covered in a month when that month or the one before was paid); the "
                "individual account balance stays usable"
            ),
        }

    async def resume(self, ssn: str, month: date, *, actor: Actor = SYSTEM_ACTOR) -> dict[str, Any]:
        """Contributions are accepted again from `month` on (a counter operation)."""
        ssn = checked_ssn(ssn)
        month = month_of(month)
        async with self._pool.acquire() as conn, conn.transaction():
            if await insurance.lock_person(conn, ssn) is None:
                raise NoSuchRecord("no such person")
            started = await insurance.resume_suspension(conn, ssn, month)
            if started is None:
                raise ConflictsWithRecord(
                    "no open suspension that starts before this month", code="not_suspended"
                )
            await audit.record(
                conn,
                actor,
                "insurance.resumed",
                "person",
                ssn,
                {"suspended_from": format_month(started), "resumed_from": format_month(month)},
            )
            suspensions = await insurance.suspensions_of(conn, ssn)
        return {"ssn": ssn, "suspensions": [_suspension_json(s) for s in suspensions]}

    # Coverage -------------------------------------------------------------------------

    async def eligibility(self, ssn: str, day: date | None = None) -> dict[str, Any]:
        """Covered or not for pooled-fund reimbursement on `day`, and why."""
        ssn = checked_ssn(ssn)
        day = day or self._today()
        async with self._pool.acquire() as conn:
            person = await people.person_with_account(conn, ssn)
            if person is None:
                raise NoSuchRecord("no such person")
            paid = await insurance.contribution_months(conn, ssn, date(1, 1, 1), month_of(day))
            suspensions = await insurance.suspensions_of(conn, ssn)
        coverage = coverage_on(day, [r["month"] for r in paid], suspensions)
        return {
            "ssn": ssn,
            "name": person["name"],
            "date": day.isoformat(),
            "month": format_month(coverage.month),
            "covered": coverage.covered,
            "reason": coverage.reason,
            "explanation": coverage.explanation(),
            "paid_for_month": coverage.paid_for_month,
            "paid_for_previous_month": coverage.paid_for_previous_month,
            "last_paid_month": _month_or_none(coverage.last_paid_month),
            "suspended_from": _month_or_none(coverage.suspended_from),
            # Whatever the coverage, the individual account pays at the POS.
            "individual_account": {
                "account_id": person["account_id"],
                "balance": person["balance"],
                "status": person["account_status"],
                "usable_at_pos": person["account_status"] == "active",
            },
        }

    # Payment notices ------------------------------------------------------------------

    async def person_notice(self, ssn: str, months: MonthRange) -> dict[str, Any]:
        """Per month: paid (with the parts), suspended, or missing; and who owes it."""
        ssn = checked_ssn(ssn)
        async with self._pool.acquire() as conn:
            person = await people.get_person(conn, ssn)
            if person is None:
                raise NoSuchRecord("no such person")
            paid = await insurance.contribution_months(conn, ssn, months.first, months.last)
            suspensions = await insurance.suspensions_of(conn, ssn)
            employments = await insurance.employments_of_person(conn, ssn)
        paid_parts = {r["month"]: (r["employer_part"], r["individual_part"]) for r in paid}
        lines = notice_lines(
            [
                m
                for m in _months(months)
                # With employments on record, a month none of them covers (before the
                # hiring, between jobs) is owed by nobody: listed only if paid anyway.
                if not employments
                or m in paid_parts
                or any(employment_covers(e["hired_on"], e["ended_on"], m) for e in employments)
            ],
            paid_parts,
            suspensions,
        )
        out_lines = []
        for line in lines:
            payer = next(
                (
                    e["employer_id"] or FLEXIBLE
                    for e in employments
                    if employment_covers(e["hired_on"], e["ended_on"], line.month)
                ),
                None,
            )
            out_lines.append(
                {
                    "ssn": ssn,
                    "month": format_month(line.month),
                    "status": line.status,
                    "employer_part": line.employer_part,
                    "individual_part": line.individual_part,
                    "payer": payer,
                }
            )
        return {
            "ssn": ssn,
            "name": person["name"],
            "from": format_month(months.first),
            "to": format_month(months.last),
            **_notice_totals(out_lines),
            "months": out_lines,
        }

    async def employer_notice(self, employer_id: str, months: MonthRange) -> dict[str, Any]:
        """For each employee, the months of the range they were employed: paid or missing."""
        async with self._pool.acquire() as conn:
            employer = await insurance.get_employer(conn, employer_id)
            if employer is None:
                raise NoSuchRecord("no such employer")
            employments = await insurance.employments_of_employer(
                conn, employer_id, months.first, months.last
            )
            ssns = sorted({e["ssn"] for e in employments})
            paid_rows = await insurance.contributions_of_people(
                conn, ssns, months.first, months.last
            )
            suspension_rows = await insurance.suspensions_of_people(conn, ssns)
        paid: dict[str, dict[date, tuple[int, int]]] = {}
        for r in paid_rows:
            paid.setdefault(r["ssn"], {})[r["month"]] = (r["employer_part"], r["individual_part"])
        suspended: dict[str, list[Suspension]] = {}
        for r in suspension_rows:
            suspended.setdefault(r["ssn"], []).append(
                Suspension(r["from_month"], r["resumed_from"])
            )
        employees, all_lines = [], []
        for e in employments:
            employed = [
                m for m in _months(months) if employment_covers(e["hired_on"], e["ended_on"], m)
            ]
            lines = [
                {
                    "ssn": e["ssn"],
                    "name": e["person_name"],
                    "month": format_month(line.month),
                    "status": line.status,
                    "employer_part": line.employer_part,
                    "individual_part": line.individual_part,
                }
                for line in notice_lines(
                    employed, paid.get(e["ssn"], {}), suspended.get(e["ssn"], ())
                )
            ]
            all_lines += lines
            employees.append(
                {
                    "ssn": e["ssn"],
                    "name": e["person_name"],
                    "employment_id": e["employment_id"],
                    "hired_on": e["hired_on"].isoformat(),
                    "ended_on": e["ended_on"].isoformat() if e["ended_on"] else None,
                    "late_registration": e["late_registration"],
                    **_notice_totals(lines),
                    "months": lines,
                }
            )
        return {
            "employer_id": employer_id,
            "name": employer["name"],
            "from": format_month(months.first),
            "to": format_month(months.last),
            **_notice_totals(all_lines),
            "employees": employees,
        }

    # Allocation -----------------------------------------------------------------------

    async def run_allocation(self, month: date, *, actor: Actor = SYSTEM_ACTOR) -> dict[str, Any]:
        """Credit every individual account from the month's contributions, once per
        account and month. Batches of ALLOCATION_BATCH accounts, one transaction each, so
        a run that stops half-way is completed by running it again."""
        month = month_of(month)
        if month > self.current_month():
            raise ConflictsWithRecord("a month is allocated once it has begun", code="future_month")
        reference = allocation_reference(month)
        persons_now = amount_now = batches = 0
        after = ""
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                page = await insurance.pending_allocations(conn, month, after, ALLOCATION_BATCH)
                if not page:
                    break
                after = page[-1]["ssn"]
                claimed = await insurance.claim_allocations(
                    conn,
                    month,
                    [r["account_id"] for r in page],
                    [r["ssn"] for r in page],
                    [r["employer_part"] for r in page],
                    [r["individual_part"] for r in page],
                    [allocation_amount(r["employer_part"], r["individual_part"]) for r in page],
                )
                credited = [(r["account_id"], r["amount"]) for r in claimed if r["amount"] > 0]
                if credited:
                    await insurance.credit_allocations(
                        conn, [a for a, _ in credited], [m for _, m in credited], reference
                    )
                if claimed:
                    batch_amount = sum(m for _, m in credited)
                    await audit.record(
                        conn,
                        actor,
                        "allocation.posted",
                        "allocation",
                        format_month(month),
                        {
                            "persons": len(claimed),
                            "amount": batch_amount,
                            "first_account_id": min(r["account_id"] for r in claimed),
                            "last_account_id": max(r["account_id"] for r in claimed),
                        },
                    )
                    persons_now += len(claimed)
                    amount_now += batch_amount
                    batches += 1
        log.info(
            "allocation_run",
            month=format_month(month),
            persons=persons_now,
            amount=amount_now,
            batches=batches,
        )
        report = await self.allocation_summary(month)
        report["this_run"] = {"persons": persons_now, "amount": amount_now, "batches": batches}
        return report

    async def allocation_summary(self, month: date) -> dict[str, Any]:
        month = month_of(month)
        row = await insurance.allocation_summary(self._pool, month)
        return {
            "month": format_month(month),
            "reference": allocation_reference(month),
            "employer_share_percent": EMPLOYER_SHARE_PERCENT,
            "allocated": {
                "persons": row["persons"],
                "amount": row["amount"],
                "employer_part": row["employer_part"],
                "individual_part": row["individual_part"],
                "to_pooled_fund": row["employer_part"] + row["individual_part"] - row["amount"],
            },
            "pending_persons": row["pending"],
        }

    async def allocation_report(
        self, month: date, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        """The month's summary and one page of per-person lines, in account order."""
        check_limit(limit, MAX_REPORT_LINES)
        month = month_of(month)
        after = decode_cursor(cursor) if cursor else 0
        rows, next_cursor = cut_page(
            await insurance.allocation_lines(self._pool, month, after, limit + 1),
            limit,
            "account_id",
        )
        lines = [
            {
                "account_id": r["account_id"],
                "ssn": r["ssn"],
                "name": r["name"],
                "employer_part": r["employer_part"],
                "individual_part": r["individual_part"],
                "amount": r["amount"],
                "allocated_at": r["allocated_at"].isoformat(),
            }
            for r in rows
        ]
        return {
            **await self.allocation_summary(month),
            "lines": lines,
            "next_cursor": next_cursor,
        }

    # The person at the counter --------------------------------------------------------

    async def person_record(self, ssn: str) -> dict[str, Any]:
        ssn = checked_ssn(ssn)
        citizen = parse_citizen_id(ssn)
        async with self._pool.acquire() as conn:
            person = await people.person_with_account(conn, ssn)
            if person is None:
                raise NoSuchRecord("no such person")
            cards = await people.cards_of_person(conn, ssn)
            employments = await insurance.employments_of_person(conn, ssn)
            suspensions = await insurance.suspensions_of(conn, ssn)
        return {
            "ssn": ssn,
            "name": person["name"],
            "birth_date": citizen.birth_date.isoformat(),
            "sex": citizen.sex,
            "account_id": person["account_id"],
            "balance": person["balance"],
            "account_status": person["account_status"],
            "cards": [
                {
                    "pan": c["pan"],
                    "status": c["status"],
                    "expires_on": c["expires_on"].isoformat(),
                    "pin_failures": c["pin_failures"],
                }
                for c in cards
            ],
            "employments": [_employment_json(e) for e in employments],
            "suspensions": [_suspension_json(s) for s in suspensions],
        }


def _months(months: MonthRange) -> list[date]:
    return months_from_to(months.first, months.last)


def _notice_totals(lines: list[dict[str, Any]]) -> dict[str, Any]:
    paid = [line for line in lines if line["status"] == "paid"]
    return {
        "paid_months": len(paid),
        "missing_months": [line["month"] for line in lines if line["status"] == "missing"],
        "employer_part_paid": sum(line["employer_part"] for line in paid),
        "individual_part_paid": sum(line["individual_part"] for line in paid),
    }


def _month_or_none(month: date | None) -> str | None:
    return format_month(month) if month is not None else None


def _employer_json(row: Any) -> dict[str, Any]:
    return {"employer_id": row["employer_id"], "name": row["name"]}


def _suspension_json(s: Suspension) -> dict[str, Any]:
    return {
        "from_month": format_month(s.from_month),
        "resumed_from": _month_or_none(s.resumed_from),
    }


def _employment_json(row: Any) -> dict[str, Any]:
    return {
        "employment_id": row["employment_id"],
        "ssn": row["ssn"],
        "name": row["person_name"],
        "kind": row["kind"],
        "employer_id": row["employer_id"],
        "employer_name": row["employer_name"],
        "hired_on": row["hired_on"].isoformat(),
        "registered_on": row["registered_on"].isoformat(),
        "days_to_register": row["days_to_register"],
        "deadline_days": REGISTRATION_DEADLINE_DAYS,
        "late_registration": row["late_registration"],
        "ended_on": row["ended_on"].isoformat() if row["ended_on"] else None,
        "registered_by": row["registered_by"],
    }


def _draw_employer_id() -> str:
    # 9 = registered by market regulation, 1 = enterprise, region 110105 (Chaoyang).
    body = "91110105" + "".join(secrets.choice(_USCC_BODY_ALPHABET) for _ in range(9))
    return make_employer_id(body)
