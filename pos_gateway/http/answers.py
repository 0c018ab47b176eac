"""Operator and cardholder answers as typed structs (msgspec): one declaration is the
OpenAPI schema (ok= of @operation) and the rendering. A handler answers with
`render(result, TheAnswer)`: the service's plain result is converted to the struct, so an
answer that is not its documented shape (a field more, less or of another type) is a
programming error, logged and answered 500, never sent.

A new answer: an `Answer` subclass here, named in `@operation(ok=TheAnswer)` and in the
handler's `render`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType, field

# Services hand dates and times over as ISO strings, already in the form clients know.
Date = Annotated[str, Meta(extra_json_schema={"format": "date"})]
Time = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
Month = Annotated[str, Meta(pattern="^[0-9]{4}-[0-9]{2}$", description="YYYY-MM")]
Ssn = Annotated[
    str,
    Meta(
        pattern="^[0-9]{17}[0-9X]$",
        description="citizen ID number (GB 11643), which is the social security number",
    ),
]
Pan = Annotated[str, Meta(pattern="^[0-9]{16,19}$")]
MaskedPan = Annotated[str, Meta(description="first 6 and last 4 digits")]
Pin = Annotated[str, Meta(pattern="^[0-9]{4,12}$")]
Fen = Annotated[int, Meta(ge=0, description="amount in fen (1 CNY = 100 fen)")]
SignedFen = Annotated[int, Meta(description="signed amount in fen")]
MerchantId = Annotated[str, Meta(pattern="^[0-9A-Z]{15}$")]
TerminalId = Annotated[str, Meta(pattern="^[0-9A-Z]{8}$")]
EmployerId = Annotated[
    str,
    Meta(pattern="^[0-9A-HJ-NPQRTUWXY]{18}$", description="unified social credit code (GB 32100)"),
]
Cursor = Annotated[str | None, Meta(description="pass back as ?cursor= for more")]
Sex = Literal["male", "female"]
MonthStatus = Literal["paid", "missing", "suspended"]


class Answer(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A closed answer: converting a result with a field more refuses it."""


A = TypeVar("A", bound=Answer)


def render(result: Any, shape: type[A], *, status: int = 200) -> web.Response:
    """`result` (a service's plain answer) as `shape`, encoded once."""
    answer = result if isinstance(result, shape) else msgspec.convert(result, shape)
    return web.Response(
        body=msgspec.json.encode(answer), status=status, content_type="application/json"
    )


class Status(Answer):
    status: str


class LoginAnswer(Answer):
    token: str  # shown once; only its hash is stored
    expires_in: int
    must_change_password: bool
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (the scheme's name)


# Cards, accounts, merchants, terminals ---------------------------------------------------


class PersonRegistered(Answer):
    ssn: Ssn
    account_id: int
    balance: Fen
    created: bool


class ContributionRecorded(Answer):
    month: Month
    created: bool


class ContributionCorrected(Answer):
    month: Month
    employer_part: Fen
    individual_part: Fen
    corrected: bool


class IssuedCard(Answer):
    pan: Pan
    account_id: int
    expires_on: Date
    pin: Pin | UnsetType = UNSET  # generated: shown this once, for the PIN mailer
    password: str | UnsetType = UNSET  # the first self-service password, with the first card


class ReplacementCard(Answer):
    pan: Pan
    account_id: int
    expires_on: Date
    replaces: Pan
    pin: Pin | UnsetType = UNSET


class Card(Answer):
    pan: Pan
    account_id: int
    status: Literal["active", "lost", "replaced"]
    expires_on: Date
    pin_locked: bool
    pin_failures: int
    account_status: str
    balance: Fen


class Merchant(Answer):
    merchant_id: MerchantId
    name: str
    kind: Literal["pharmacy", "hospital"]
    designated_from: Date
    designated_until: Date
    suspended: bool


class TerminalKeys(Answer):
    """Returned once; the gateway keeps them only wrapped under the master key."""

    terminal_id: TerminalId
    merchant_id: MerchantId
    mac_key: Annotated[str, Meta(pattern="^[0-9a-f]{64}$", description="HMAC-SHA256 key")]
    pin_key: Annotated[str, Meta(pattern="^[0-9a-f]{32}$", description="AES-128 key")]


class StatementEntry(Answer):
    entry_id: int
    time: Time
    kind: Literal["allocation", "adjustment", "purchase", "refund", "reversal"]
    amount: SignedFen
    balance_after: Fen
    merchant_id: str | None
    merchant_name: str | None
    terminal_id: str | None
    rrn: str | None
    reference: str | None


class StatementPage(Answer):
    entries: list[StatementEntry]
    next_cursor: Cursor


class Settlement(Answer):
    date: Date
    merchants: list[dict[str, Any]]
    totals: dict[str, Any]


# Employers, employments, people -----------------------------------------------------------


class Employer(Answer):
    employer_id: EmployerId
    name: str


class Employment(Answer):
    employment_id: int
    ssn: Ssn
    name: str
    kind: Literal["employee", "flexible"]
    employer_id: str | None
    employer_name: str | None
    hired_on: Date
    registered_on: Date
    days_to_register: int
    deadline_days: int
    late_registration: bool
    ended_on: Date | None
    registered_by: Literal["operator", "cardholder"]


class LateRegistrations(Answer):
    from_: Date = field(name="from")
    to: Date
    deadline_days: int
    registrations: list[Employment]


class Suspension(Answer):
    from_month: Month
    resumed_from: Month | None


class PersonCard(Answer):
    pan: Pan
    status: str
    expires_on: Date
    pin_failures: int


class Person(Answer):
    ssn: Ssn
    name: str
    birth_date: Date
    sex: Sex
    account_id: int
    balance: Fen
    account_status: str
    cards: list[PersonCard]
    employments: list[Employment]
    suspensions: list[Suspension]


class SuspensionDeclared(Answer):
    ssn: Ssn
    from_month: Month
    declared_at: Time
    contributions_accepted_until: Month
    suspensions: list[Suspension]
    note: str


class Resumed(Answer):
    ssn: Ssn
    suspensions: list[Suspension]


class PasswordReset(Answer):
    ssn: Ssn
    status: str
    must_change_password: bool
    password: str  # the new first password, shown this once


# Payment notices and eligibility ----------------------------------------------------------


class _NoticeTotals(Answer):
    paid_months: int
    missing_months: list[Month]
    employer_part_paid: Fen
    individual_part_paid: Fen


class PersonMonth(Answer):
    ssn: Ssn
    month: Month
    status: MonthStatus
    employer_part: Fen
    individual_part: Fen
    payer: Annotated[
        str | None,
        Meta(description="employer_id, 'flexible', or null when not employed"),
    ]


class PersonNotice(_NoticeTotals):
    ssn: Ssn
    name: str
    from_: Month = field(name="from")
    to: Month
    months: list[PersonMonth]


class EmployeeNoticeLine(Answer):
    ssn: Ssn
    name: str
    month: Month
    status: MonthStatus
    employer_part: Fen
    individual_part: Fen


class EmployeeNotice(_NoticeTotals):
    ssn: Ssn
    name: str
    employment_id: int
    hired_on: Date
    ended_on: Date | None
    late_registration: bool
    months: list[EmployeeNoticeLine]


class EmployerNotice(_NoticeTotals):
    employer_id: EmployerId
    name: str
    from_: Month = field(name="from")
    to: Month
    employees: list[EmployeeNotice]


class IndividualAccount(Answer):
    account_id: int
    balance: Fen
    status: Literal["active", "frozen"]
    usable_at_pos: bool


class Eligibility(Answer):
    ssn: Ssn
    name: str
    date: Date
    month: Month
    covered: bool
    reason: Literal[
        "contribution_paid_for_month",
        "contribution_paid_for_previous_month",
        "insurance_suspended",
        "contributions_interrupted",
        "no_contributions",
    ]
    explanation: str
    paid_for_month: bool
    paid_for_previous_month: bool
    last_paid_month: Month | None
    suspended_from: Month | None
    individual_account: IndividualAccount


# Allocation and audit ---------------------------------------------------------------------


class Allocated(Answer):
    persons: int
    amount: Fen
    employer_part: Fen
    individual_part: Fen
    to_pooled_fund: Fen


class _AllocationSummary(Answer):
    month: Month
    reference: str
    employer_share_percent: int
    allocated: Allocated
    pending_persons: int


class ThisRun(Answer):
    persons: int
    amount: Fen
    batches: int


class AllocationRunDone(_AllocationSummary):
    this_run: ThisRun


class AllocationLine(Answer):
    account_id: int
    ssn: Ssn
    name: str
    employer_part: Fen
    individual_part: Fen
    amount: Fen
    allocated_at: Time


class AllocationReport(_AllocationSummary):
    lines: list[AllocationLine]
    next_cursor: Cursor


class AuditEntry(Answer):
    audit_id: int
    time: Time
    actor_kind: Literal["operator", "cardholder", "system"]
    actor_id: str
    remote_addr: str | None
    request_id: str | None
    action: str
    subject_kind: str
    subject_id: str
    details: dict[str, Any]


class AuditPage(Answer):
    entries: list[AuditEntry]
    next_cursor: Cursor


# The cardholder's own views ---------------------------------------------------------------


class MyAccount(Answer):
    balance: Fen
    status: str


class MyCard(Answer):
    card_id: int
    pan: MaskedPan
    status: str
    expires_on: Date
    expired: bool
    pin_locked: bool


class Profile(Answer):
    ssn: Ssn
    name: str
    birth_date: Date
    sex: Sex
    account: MyAccount
    cards: list[MyCard]


class Balance(Answer):
    balance: Fen
    currency: Literal["CNY"]
    account_status: str


class LostCard(Answer):
    card_id: int
    pan: MaskedPan
    status: str


# The settlement split's catalogue, policies and the fund's liability (DESIGN §10) ---------


class Loaded(Answer):
    loaded: int


class CatalogueItem(Answer):
    code: str
    name: str
    category: Literal["A", "B", "C"]
    self_pay_bp: int


class Catalogue(Answer):
    items: list[CatalogueItem]


class Policy(Answer):
    merchant_kind: Literal["pharmacy", "hospital"]
    year: int
    deductible: Fen
    fund_ratio_bp: int
    annual_cap: Fen
    daily_amount_limit: Fen | None
    daily_count_limit: int | None


class Policies(Answer):
    policies: list[Policy]


class FundLiabilityRow(Answer):
    merchant_id: MerchantId
    merchant_name: str
    local_date: Date
    purchases_count: int
    owed: SignedFen | None
    given_back: Fen
    net_amount: SignedFen


class FundLiability(Answer):
    from_: Date = field(name="from")
    until: Date
    merchants: list[FundLiabilityRow]
