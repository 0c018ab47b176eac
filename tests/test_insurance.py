"""The insurance side through the operator API, on a real database: employers and
employments, contributions and suspension, coverage, allocation, payment notices."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta

import pytest

from pos_gateway.domain.months import add_months

from .conftest import World
from .helpers import new_ssn
from .insurance_helpers import (
    business_today,
    contribute,
    get,
    own_past_month,
    this_month,
    ym,
)

pytestmark = pytest.mark.usefixtures("ledger_clean")


async def _person(world: World, balance: int = 0) -> dict:
    ssn = new_ssn()
    person = await world.admin(
        "/v1/admin/people", {"ssn": ssn, "name": "Insured Person", "opening_allocation": balance}
    )
    return {**person, "ssn": ssn}


async def _employer(world: World) -> str:
    employer = await world.admin("/v1/admin/employers", {"name": "Chaoyang Textile Co."})
    return employer["employer_id"]


# Employers and employments ----------------------------------------------------------------


async def test_employer_code_is_generated_valid_and_a_bad_one_refused(world: World) -> None:
    from pos_gateway.domain.employment import employer_id_valid

    employer_id = await _employer(world)
    fetched = await get(world, f"/v1/admin/employers/{employer_id}")
    bad = await world.admin(
        "/v1/admin/employers", {"name": "X", "employer_id": "91110000600037341M"}, status=400
    )

    assert employer_id_valid(employer_id)
    assert fetched == {"employer_id": employer_id, "name": "Chaoyang Textile Co."}
    assert bad["error"]["code"] == "invalid_employer_id"


async def test_registration_on_day_30_is_on_time_and_day_31_is_late(world: World) -> None:
    employer_id = await _employer(world)
    on_time, late = await _person(world), await _person(world)
    today = business_today()

    first = await world.admin(
        "/v1/admin/employments",
        {
            "ssn": on_time["ssn"],
            "employer_id": employer_id,
            "hired_on": (today - timedelta(days=30)).isoformat(),
        },
    )
    second = await world.admin(
        "/v1/admin/employments",
        {
            "ssn": late["ssn"],
            "employer_id": employer_id,
            "hired_on": (today - timedelta(days=31)).isoformat(),
        },
    )

    assert (first["days_to_register"], first["late_registration"]) == (30, False)
    assert (second["days_to_register"], second["late_registration"]) == (31, True)
    assert second["registered_on"] == today.isoformat()
    report = await get(
        world,
        "/v1/admin/reports/late-registrations",
        employer_id=employer_id,
        **{"from": today.isoformat(), "to": today.isoformat()},
    )
    assert [r["ssn"] for r in report["registrations"]] == [late["ssn"]]
    text = await get(
        world, "/v1/admin/reports/late-registrations", employer_id=employer_id, format="csv"
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["ssn"], r["days_to_register"]) for r in rows] == [(late["ssn"], "31")]


async def test_employment_rules(world: World) -> None:
    employer_id = await _employer(world)
    person = await _person(world)
    today = business_today()
    body = {"ssn": person["ssn"], "employer_id": employer_id, "hired_on": today.isoformat()}

    await world.admin("/v1/admin/employments", body)
    twice = await world.admin("/v1/admin/employments", body, status=409)
    future = await world.admin(
        "/v1/admin/employments",
        {**body, "hired_on": (today + timedelta(days=1)).isoformat()},
        status=400,
    )
    child = await world.admin(
        "/v1/admin/employments", {**body, "hired_on": "1971-01-01"}, status=400
    )
    unknown = await world.admin(
        "/v1/admin/employments", {**body, "employer_id": "91110000600037341L"}, status=404
    )

    assert twice["error"]["code"] == "employment_open"
    assert future["error"]["code"] == child["error"]["code"] == "invalid_hired_on"
    assert unknown["error"]["code"] == "not_found"


async def test_flexible_employment_at_the_counter_is_never_late(world: World) -> None:
    person = await _person(world)
    hired = business_today() - timedelta(days=400)

    flexible = await world.admin(
        "/v1/admin/employments", {"ssn": person["ssn"], "hired_on": hired.isoformat()}
    )

    assert flexible["kind"] == "flexible" and flexible["employer_id"] is None
    assert flexible["late_registration"] is False
    record = await get(world, f"/v1/admin/people/{person['ssn']}")
    assert [e["kind"] for e in record["employments"]] == ["flexible"]


async def test_ending_an_employment(world: World) -> None:
    employer_id = await _employer(world)
    person = await _person(world)
    hired = business_today() - timedelta(days=10)
    employment = await world.admin(
        "/v1/admin/employments",
        {"ssn": person["ssn"], "employer_id": employer_id, "hired_on": hired.isoformat()},
    )
    path = f"/v1/admin/employments/{employment['employment_id']}/end"

    early = await world.admin(
        path, {"ended_on": (hired - timedelta(days=1)).isoformat()}, status=400
    )
    ended = await world.admin(path, {"ended_on": hired.isoformat()}, status=200)
    again = await world.admin(path, {"ended_on": hired.isoformat()}, status=409)

    assert early["error"]["code"] == "invalid_ended_on"
    assert ended["ended_on"] == hired.isoformat()
    assert again["error"]["code"] == "employment_ended"


async def test_person_record_reads_birth_date_and_sex_from_the_id_number(world: World) -> None:
    person = await _person(world)
    record = await get(world, f"/v1/admin/people/{person['ssn']}")
    ssn = person["ssn"]

    assert record["birth_date"] == f"{ssn[6:10]}-{ssn[10:12]}-{ssn[12:14]}"
    assert record["sex"] == ("male" if int(ssn[16]) % 2 else "female")
    bad = await get(world, "/v1/admin/people/110105196008081014", status=400)
    assert bad["error"]["code"] == "invalid_ssn"


# Coverage -----------------------------------------------------------------------------------


async def _eligibility(world: World, ssn: str, day) -> dict:
    return await get(world, f"/v1/admin/people/{ssn}/eligibility", date=day.isoformat())


async def test_coverage_boundary_months(world: World) -> None:
    person = await _person(world)
    first = this_month(-8)
    for back in range(3):  # paid for first, first+1, first+2
        await contribute(world, person["ssn"], add_months(first, back))
    last_paid = add_months(first, 2)
    grace = add_months(first, 3)
    after = add_months(first, 4)

    before = await _eligibility(world, person["ssn"], first - timedelta(days=1))
    start = await _eligibility(world, person["ssn"], first)
    last = await _eligibility(world, person["ssn"], add_months(grace, 0) - timedelta(days=1))
    in_grace_first = await _eligibility(world, person["ssn"], grace)
    in_grace_last = await _eligibility(world, person["ssn"], after - timedelta(days=1))
    ended = await _eligibility(world, person["ssn"], after)

    assert (before["covered"], before["reason"]) == (False, "no_contributions")
    assert (start["covered"], start["reason"]) == (True, "contribution_paid_for_month")
    assert last["covered"] and last["month"] == ym(last_paid)
    assert in_grace_first["covered"] and in_grace_last["covered"]
    assert in_grace_first["reason"] == "contribution_paid_for_previous_month"
    assert (ended["covered"], ended["reason"]) == (False, "contributions_interrupted")
    assert ended["last_paid_month"] == ym(last_paid)
    assert ym(last_paid) in ended["explanation"]


async def test_individual_account_pays_at_the_pos_while_not_covered(world: World) -> None:
    """The seed: interrupted contributions stop reimbursement, not the card balance."""
    terminal = await world.terminal()
    card = await world.card(balance=9_000)
    for back in (3, 4, 5):  # stopped two months ago, as the demo's card-10
        await contribute(world, card["ssn"], this_month(-back))

    status = await get(world, f"/v1/admin/people/{card['ssn']}/eligibility")
    _, answer = await terminal.transact("purchase", pan=card["pan"], pin="4321", amount=4_560)

    assert status["covered"] is False and status["reason"] == "contributions_interrupted"
    assert status["individual_account"]["usable_at_pos"] is True
    assert answer.body["response_code"] == "00" and answer.body["balance"] == 4_440


async def test_suspension_stops_contributions_and_coverage_follows(world: World) -> None:
    person = await _person(world)
    ssn = person["ssn"]
    await contribute(world, ssn, this_month(0))
    await contribute(world, ssn, this_month(1))  # paid in advance

    over_paid = await world.admin(
        f"/v1/admin/people/{ssn}/suspension", {"from_month": ym(this_month(1))}, status=409
    )
    in_past = await world.admin(
        f"/v1/admin/people/{ssn}/suspension", {"from_month": ym(this_month(-1))}, status=409
    )
    declared = await world.admin(
        f"/v1/admin/people/{ssn}/suspension", {"from_month": ym(this_month(2))}
    )
    twice = await world.admin(
        f"/v1/admin/people/{ssn}/suspension", {"from_month": ym(this_month(3))}, status=409
    )
    refused = await contribute(world, ssn, this_month(2), status=409)
    refused_later = await contribute(world, ssn, this_month(5), status=409)

    assert over_paid["error"]["code"] == in_past["error"]["code"] == "invalid_suspension_month"
    assert declared["from_month"] == ym(this_month(2))
    assert twice["error"]["code"] == "already_suspended"
    assert refused["error"]["code"] == refused_later["error"]["code"] == "insurance_suspended"

    grace = await _eligibility(world, ssn, this_month(2))
    stopped = await _eligibility(world, ssn, this_month(3))
    assert grace["covered"] and grace["suspended_from"] == ym(this_month(2))
    assert (stopped["covered"], stopped["reason"]) == (False, "insurance_suspended")

    resumed = await world.admin(
        f"/v1/admin/people/{ssn}/resumption", {"from_month": ym(this_month(4))}, status=200
    )
    assert resumed["suspensions"] == [
        {"from_month": ym(this_month(2)), "resumed_from": ym(this_month(4))}
    ]
    await contribute(world, ssn, this_month(4))
    still_refused = await contribute(world, ssn, this_month(3), status=409)
    back = await _eligibility(world, ssn, this_month(4))
    assert still_refused["error"]["code"] == "insurance_suspended"
    assert back["covered"] and back["reason"] == "contribution_paid_for_month"


async def test_the_schema_refuses_a_contribution_in_a_suspended_month(world: World, db) -> None:
    import asyncpg

    person = await _person(world)
    await world.admin(
        f"/v1/admin/people/{person['ssn']}/suspension", {"from_month": ym(this_month(0))}
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO contributions (ssn, month) VALUES ($1, $2)",
            person["ssn"],
            this_month(1),
        )


# Allocation ---------------------------------------------------------------------------------


async def _journal(db, account_id: int, reference: str) -> list[tuple[str, int, int]]:
    rows = await db.fetch(
        """
        SELECT kind, amount, balance_after FROM journal
        WHERE account_id = $1 AND reference = $2 ORDER BY entry_id
        """,
        account_id,
        reference,
    )
    return [(r["kind"], r["amount"], r["balance_after"]) for r in rows]


async def test_allocation_credits_each_account_once(world: World, db) -> None:
    month = own_past_month()
    alice, bob, nil = await _person(world, 1_000), await _person(world), await _person(world)
    await contribute(world, alice["ssn"], month, 60_000, 20_000)
    await contribute(world, bob["ssn"], month, 333, 0)
    await contribute(world, nil["ssn"], month, 0, 0)
    await contribute(world, alice["ssn"], add_months(month, 1))  # another month: untouched

    first = await world.admin("/v1/admin/allocations", {"month": ym(month)}, status=200)
    second = await world.admin("/v1/admin/allocations", {"month": ym(month)}, status=200)

    assert first["this_run"]["persons"] == 3 and first["this_run"]["amount"] == 38_099
    assert second["this_run"] == {"persons": 0, "amount": 0, "batches": 0}
    assert second["allocated"] == {
        "persons": 3,
        "amount": 38_099,
        "employer_part": 60_333,
        "individual_part": 20_000,
        "to_pooled_fund": 42_234,
    }
    assert second["pending_persons"] == 0
    reference = f"allocation {ym(month)}"
    assert await _journal(db, alice["account_id"], reference) == [("allocation", 38_000, 39_000)]
    assert await _journal(db, bob["account_id"], reference) == [("allocation", 99, 99)]
    assert await _journal(db, nil["account_id"], reference) == []  # nothing to credit


async def test_allocation_in_several_batches_credits_everyone_once(
    world: World, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pos_gateway.services import insurance

    monkeypatch.setattr(insurance, "ALLOCATION_BATCH", 2)
    month = own_past_month()
    people = [await _person(world) for _ in range(5)]
    for person in people:
        await contribute(world, person["ssn"], month, 1_000, 1_000)

    report = await world.admin("/v1/admin/allocations", {"month": ym(month)}, status=200)

    assert report["this_run"] == {"persons": 5, "amount": 5 * 1_300, "batches": 3}
    for person in people:
        lines = await _journal(db, person["account_id"], f"allocation {ym(month)}")
        assert lines == [("allocation", 1_300, 1_300)]


async def test_concurrent_allocation_runs_credit_once(
    world: World, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pos_gateway.services import insurance

    monkeypatch.setattr(insurance, "ALLOCATION_BATCH", 2)  # runs interleave batch by batch
    month = own_past_month()
    people = [await _person(world) for _ in range(6)]
    for person in people:
        await contribute(world, person["ssn"], month, 10_000, 5_000)

    results = await asyncio.gather(
        *(world.admin("/v1/admin/allocations", {"month": ym(month)}, status=200) for _ in range(4))
    )

    assert sum(r["this_run"]["persons"] for r in results) == 6
    for person in people:
        lines = await _journal(db, person["account_id"], f"allocation {ym(month)}")
        assert lines == [("allocation", 8_000, 8_000)]


async def test_allocation_report_pages_and_csv(world: World) -> None:
    month = own_past_month()
    people = [await _person(world) for _ in range(3)]
    for person in people:
        await contribute(world, person["ssn"], month, 1_000, 100)
    await world.admin("/v1/admin/allocations", {"month": ym(month)}, status=200)

    page1 = await get(world, f"/v1/admin/allocations/{ym(month)}", limit="2")
    page2 = await get(
        world, f"/v1/admin/allocations/{ym(month)}", limit="2", cursor=page1["next_cursor"]
    )
    text = await get(world, f"/v1/admin/allocations/{ym(month)}", format="csv")

    assert page1["allocated"]["persons"] == 3 and page1["allocated"]["amount"] == 3 * 400
    assert len(page1["lines"]) == 2 and len(page2["lines"]) == 1
    assert page2["next_cursor"] is None
    seen = {line["ssn"] for line in page1["lines"] + page2["lines"]}
    assert seen == {p["ssn"] for p in people}
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["amount"] for r in rows) == ["4.00", "4.00", "4.00"]  # yuan


async def test_a_future_month_is_not_allocated(world: World) -> None:
    refused = await world.admin("/v1/admin/allocations", {"month": ym(this_month(1))}, status=409)
    assert refused["error"]["code"] == "future_month"


async def test_allocation_appears_on_the_statement(world: World) -> None:
    month = own_past_month()
    person = await _person(world)
    await contribute(world, person["ssn"], month, 10_000, 2_000)
    await world.admin("/v1/admin/allocations", {"month": ym(month)}, status=200)

    statement = await get(world, f"/v1/admin/accounts/{person['account_id']}/statement")

    assert [(e["kind"], e["amount"], e["reference"]) for e in statement["entries"]] == [
        ("allocation", 5_000, f"allocation {ym(month)}")
    ]


# Payment notices -----------------------------------------------------------------------------


async def test_person_notice_shows_paid_missing_and_suspended_months(world: World) -> None:
    person = await _person(world)
    ssn = person["ssn"]
    await contribute(world, ssn, this_month(-2), 6_000, 2_000)
    await contribute(world, ssn, this_month(0), 6_000, 2_000)
    await world.admin(f"/v1/admin/people/{ssn}/suspension", {"from_month": ym(this_month(1))})

    notice = await get(
        world,
        f"/v1/admin/people/{ssn}/contributions",
        **{"from": ym(this_month(-3)), "to": ym(this_month(2))},
    )
    text = await get(
        world,
        f"/v1/admin/people/{ssn}/contributions",
        format="csv",
        **{"from": ym(this_month(-3)), "to": ym(this_month(2))},
    )

    assert [(m["month"], m["status"]) for m in notice["months"]] == [
        (ym(this_month(-3)), "missing"),
        (ym(this_month(-2)), "paid"),
        (ym(this_month(-1)), "missing"),
        (ym(this_month(0)), "paid"),
        (ym(this_month(1)), "suspended"),
        (ym(this_month(2)), "suspended"),
    ]
    assert notice["paid_months"] == 2 and notice["employer_part_paid"] == 12_000
    assert notice["missing_months"] == [ym(this_month(-3)), ym(this_month(-1))]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["status"] for r in rows] == ["missing", "paid", "missing", "paid"] + ["suspended"] * 2


async def test_employer_notice_lists_employees_months_and_what_is_missing(world: World) -> None:
    employer_id = await _employer(world)
    paid_up, behind = await _person(world), await _person(world)
    hired = this_month(-2)
    for person in (paid_up, behind):
        await world.admin(
            "/v1/admin/employments",
            {"ssn": person["ssn"], "employer_id": employer_id, "hired_on": hired.isoformat()},
        )
    for back in (-2, -1, 0):
        await contribute(world, paid_up["ssn"], this_month(back))
    await contribute(world, behind["ssn"], this_month(-2))

    notice = await get(
        world,
        f"/v1/admin/employers/{employer_id}/payment-notice",
        **{"from": ym(this_month(-5)), "to": ym(this_month(0))},
    )
    text = await get(
        world,
        f"/v1/admin/employers/{employer_id}/payment-notice",
        format="csv",
        **{"from": ym(this_month(-5)), "to": ym(this_month(0))},
    )

    by_ssn = {e["ssn"]: e for e in notice["employees"]}
    assert by_ssn[paid_up["ssn"]]["missing_months"] == []
    assert by_ssn[paid_up["ssn"]]["paid_months"] == 3
    assert by_ssn[behind["ssn"]]["missing_months"] == [ym(this_month(-1)), ym(this_month(0))]
    # Months before the hiring are not owed by this employer.
    assert len(by_ssn[behind["ssn"]]["months"]) == 3
    assert notice["missing_months"] == [ym(this_month(-1)), ym(this_month(0))]
    assert notice["employer_part_paid"] == 4 * 60_000
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 6 and {r["ssn"] for r in rows} == {paid_up["ssn"], behind["ssn"]}


async def test_notice_range_is_validated(world: World) -> None:
    person = await _person(world)
    path = f"/v1/admin/people/{person['ssn']}/contributions"
    backwards = await get(world, path, status=400, **{"from": "2026-05", "to": "2026-01"})
    too_long = await get(world, path, status=400, **{"from": "2000-01", "to": "2026-01"})
    malformed = await get(world, path, status=400, **{"from": "2026-13"})

    assert backwards["error"]["code"] == too_long["error"]["code"] == "invalid_period"
    assert malformed["error"]["code"] == "malformed_request"


@pytest.mark.parametrize(
    "query",
    [{"date": "0001-01-15"}, {"date": "9999-12-31"}, {"date": "2026-1-5"}],
)
async def test_eligibility_dates_outside_the_supported_years_are_400(
    world: World, query: dict[str, str]
) -> None:
    card = await world.card()

    resp = await world.client.get(
        f"/v1/admin/people/{card['ssn']}/eligibility", params=query, headers=world.headers
    )

    assert resp.status == 400 and "error" in await resp.json()
