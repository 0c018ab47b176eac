"""DESIGN §9's messages: ISO 8583 fields to the gateway's requests, answers back to fields.

Fields are pyiso8583's decoded form: {"t": MTI, "3": "000000", "52": hex, ...}. A request
that lacks a field or has a bad value raises InvalidInput (answered 39 = 30).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pos_gateway.domain.cards import pan_well_formed
from pos_gateway.domain.identity import request_identity
from pos_gateway.domain.local_dates import nearest_date
from pos_gateway.domain.money import is_fen_amount
from pos_gateway.errors import InvalidInput
from pos_gateway.services.batches import figures_digest
from pos_gateway.services.transactions import TransactionRequest

# Response codes of §9 beyond the business ones of §4.
FORMAT_ERROR = "30"
SECURITY_VIOLATION = "63"
OUT_OF_BALANCE = "95"
INVALID_TRANSACTION = "12"
ISSUER_UNAVAILABLE = "91"

TRANSACTION_MTIS = frozenset({"0200", "0201", "0400", "0401"})
REVERSAL_MTIS = frozenset({"0400", "0401"})
BATCH_CLOSE_MTI = "0500"
NETWORK_MTI = "0800"
SIGN_ON, SIGN_OFF, ECHO = "001", "002", "301"
NETWORK_CODES = frozenset({SIGN_ON, SIGN_OFF, ECHO})
CURRENCY_NUMERIC = "156"  # CNY, ISO 4217

TERMINAL_ID_RE = re.compile(r"[0-9A-Z]{8}")
_DIGITS = {n: re.compile(rf"[0-9]{{{n}}}") for n in (4, 6, 10, 12, 16, 42)}
_REVERSAL_ORIGINAL_MTIS = ("0200", "0201")

# Processing code (field 3) -> transaction type; the refused kinds by their first two digits.
BALANCE_INQUIRY_CODE = "310000"
_PROCESSING_CODES = {"000000": "purchase", BALANCE_INQUIRY_CODE: "balance_inquiry",
                     "200000": "refund"}  # fmt: skip
_REFUSED_KINDS = {"01": "cash_withdrawal", "40": "transfer"}
# type -> (required fields, optional fields) of a 0200/0201, besides 11, 12, 13, 41.
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "purchase": (frozenset({"2", "4", "49", "52"}), frozenset()),
    "balance_inquiry": (frozenset({"2", "52"}), frozenset({"49"})),
    "cash_withdrawal": (frozenset({"2", "4", "49"}), frozenset({"52"})),
    "transfer": (frozenset({"2", "4", "49"}), frozenset({"52"})),
    "refund": (frozenset({"4", "49", "37"}), frozenset({"2"})),
}


def answer_mti(mti: str) -> str:
    """Request MTI + 10; a repeat (0201, 0401) is answered as its original (0210, 0410)."""
    return f"{mti[:2]}{(int(mti[2]) + 1) % 10}0"


def _digits(fields: dict[str, str], name: str, length: int) -> str:
    value = fields.get(name)
    if value is None:
        raise InvalidInput(f"field {name} is missing", code="missing_field")
    if not _DIGITS[length].fullmatch(value):
        raise InvalidInput(f"field {name} must be {length} digits", code="invalid_field")
    return value


def _time_ok(hhmmss: str) -> bool:
    return int(hhmmss[:2]) < 24 and int(hhmmss[2:4]) < 60 and int(hhmmss[4:]) < 60


def _local_date(mmdd: str, business_date: date, name: str) -> date:
    found = nearest_date(int(mmdd[:2]), int(mmdd[2:]), business_date)
    if found is None:
        raise InvalidInput(f"field {name}: no such date {mmdd}", code="invalid_field")
    return found


def transaction_type(fields: dict[str, str]) -> str:
    """The type named by field 3 of a 0200/0201 (a reversal's field 3 is its original's)."""
    code = _digits(fields, "3", 6)
    if fields["t"] in REVERSAL_MTIS:
        return "reversal"
    txn_type = _PROCESSING_CODES.get(code) or _REFUSED_KINDS.get(code[:2])
    if txn_type is None:
        raise InvalidInput(f"unknown processing code {code}", code="unknown_type")
    return txn_type


def content_hash(
    txn_type: str,
    pan: str | None,
    amount: int | None,
    original_rrn: str | None,
    original_stan: str | None,
) -> bytes:
    """The request's identity for replay vs. 94: domain.identity.request_identity, the
    one the JSON transport takes too (§9: business fields only, not the time of day, the
    PIN block, how the currency is spelled or the original's date of a reversal), so a
    request sent by one transport and retransmitted by the other is one request. ISO 8583
    carries no items (§10 is JSON only)."""
    return request_identity(
        txn_type=txn_type,
        pan=pan,
        amount=amount,
        original_rrn=original_rrn,
        original_stan=original_stan,
    )


def parse_transaction(fields: dict[str, str], business_date: date) -> TransactionRequest:
    """A 0200/0201 or 0400/0401 as the gateway's request; InvalidInput when a field is
    missing or bad. The local date (13, MMDD) takes the year nearest the business date."""
    txn_type = transaction_type(fields)
    stan = _digits(fields, "11", 6)
    if not _time_ok(_digits(fields, "12", 6)):
        raise InvalidInput("field 12 must be a time hhmmss", code="invalid_field")
    local_date = _local_date(_digits(fields, "13", 4), business_date, "13")
    if txn_type == "reversal":
        required, optional = frozenset({"90"}), frozenset({"2", "4", "49"})
    else:
        required, optional = _FIELDS[txn_type]
    missing = sorted(required - fields.keys(), key=int)
    if missing:
        raise InvalidInput(f"missing field(s) {', '.join(missing)}", code="missing_field")
    present = (required | optional) & fields.keys()

    pan = fields.get("2") if "2" in present else None
    if pan is not None and not pan_well_formed(pan):
        raise InvalidInput("field 2 must be 16 to 19 digits", code="invalid_pan")
    amount = int(_digits(fields, "4", 12)) if "4" in present else None
    if amount is not None and not is_fen_amount(amount):
        raise InvalidInput("field 4 is out of range", code="invalid_amount")
    if "49" in present and fields["49"] != CURRENCY_NUMERIC:
        raise InvalidInput(f"field 49 must be {CURRENCY_NUMERIC} (CNY)", code="invalid_currency")
    pin_block = bytes.fromhex(fields["52"]) if "52" in present else None
    original_rrn = _digits(fields, "37", 12) if txn_type == "refund" else None
    original_stan = original_local_date = None
    if txn_type == "reversal":
        original_stan, original_local_date = _original_data(fields, business_date)
    return TransactionRequest(
        txn_type=txn_type,
        stan=stan,
        local_date=local_date,
        pan=pan,
        pin_block=pin_block,
        amount=amount,
        content_hash=content_hash(txn_type, pan, amount, original_rrn, original_stan),
        original_rrn=original_rrn,
        original_stan=original_stan,
        original_local_date=original_local_date,
    )


def _original_data(fields: dict[str, str], business_date: date) -> tuple[str, date]:
    """Field 90: original MTI (4), STAN (6), MMDDhhmmss (10), 22 zeros."""
    value = _digits(fields, "90", 42)
    mti, stan, mmdd, hhmmss, rest = value[:4], value[4:10], value[10:14], value[14:20], value[20:]
    if mti not in _REVERSAL_ORIGINAL_MTIS or rest != "0" * 22 or not _time_ok(hhmmss):
        raise InvalidInput(
            "field 90 must be 0200 + STAN + MMDDhhmmss + 22 zeros", code="invalid_field"
        )
    return stan, _local_date(mmdd, business_date, "90")


def parse_batch_close(fields: dict[str, str]) -> tuple[int, dict[str, Any], bytes]:
    """A 0500: batch number (60) and the terminal's purchases (76 count, 88 amount) and
    refunds (74, 86)."""
    raw_batch = fields.get("60")
    if raw_batch is None:
        raise InvalidInput("field 60 (batch number) is missing", code="missing_field")
    if not (_DIGITS[6].fullmatch(raw_batch) and int(raw_batch) > 0):
        raise InvalidInput("field 60 must be a batch number of 6 digits", code="invalid_field")
    figures = {
        "purchases": {"count": int(_digits(fields, "76", 10)),
                      "amount": int(_digits(fields, "88", 16))},
        "refunds": {"count": int(_digits(fields, "74", 10)),
                    "amount": int(_digits(fields, "86", 16))},
    }  # fmt: skip
    for part in figures.values():
        if not (part["count"] < 2**31 and is_fen_amount(part["amount"])):
            raise InvalidInput("batch figures are out of range", code="invalid_figures")
    batch_no = int(raw_batch)
    return batch_no, figures, figures_digest(batch_no, figures)


def network_code(fields: dict[str, str]) -> str:
    """Field 70 of an 0800: sign-on 001, sign-off 002, echo 301."""
    code = fields.get("70")
    if code not in NETWORK_CODES:
        raise InvalidInput("field 70 must be 001, 002 or 301", code="invalid_field")
    return code


# Answers -------------------------------------------------------------------------------


def _echo(fields: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: fields[name] for name in names if name in fields}


def refusal(fields: dict[str, str], code: str) -> dict[str, str]:
    """An answer that only echoes 11 and 41 (63: failed authentication; 30: format)."""
    out = {"t": answer_mti(fields["t"])}
    if _DIGITS[6].fullmatch(fields.get("11", "")):
        out["11"] = fields["11"]
    if TERMINAL_ID_RE.fullmatch(fields.get("41", "")):
        out["41"] = fields["41"]
    out["39"] = code
    return out


def balance_block(balance: int) -> str:
    """Field 54: account type 00, amount type 02 (available), currency, C, 12 digits."""
    return f"0002{CURRENCY_NUMERIC}C{balance:012d}"


# DESIGN §9's answer fields of a balance inquiry: no time, date, amount or auth code, even
# when the request carried them.
_BALANCE_ANSWER_FIELDS = frozenset({"t", "3", "11", "37", "39", "41", "54"})


def unsigned_answer(fields: dict[str, str], code: str) -> dict[str, str]:
    """An answer that cannot be MACed because the terminal could not be authenticated
    (91 or 96 before its key was read): as an answer to a request that failed
    authentication, it echoes only 11 and 41, since nothing else in it is vouched for."""
    return refusal(fields, code)


def transaction_answer(fields: dict[str, str], answer: dict[str, Any]) -> dict[str, str]:
    """The 0210/0410 for a business answer (services.transactions.render's shape)."""
    out = _transaction_answer(fields, answer)
    if fields["t"] not in REVERSAL_MTIS and fields.get("3") == BALANCE_INQUIRY_CODE:
        return {name: value for name, value in out.items() if name in _BALANCE_ANSWER_FIELDS}
    return out


def _transaction_answer(fields: dict[str, str], answer: dict[str, Any]) -> dict[str, str]:
    reversal = fields["t"] in REVERSAL_MTIS
    out = {"t": answer_mti(fields["t"])}
    out.update(_echo(fields, ("11", "41") if reversal else ("3", "11", "12", "13", "41")))
    amount = answer.get("amount")
    if amount is not None:
        out["4"] = f"{amount:012d}"
    elif "4" in fields and not reversal:
        out["4"] = fields["4"]
    if answer.get("rrn"):
        out["37"] = answer["rrn"]
    if answer.get("approved") and answer.get("auth_code"):
        out["38"] = answer["auth_code"]
    out["39"] = answer["response_code"]
    if answer.get("balance") is not None and not reversal:
        out["54"] = balance_block(answer["balance"])
    return out


def batch_close_answer(fields: dict[str, str], answer: dict[str, Any]) -> dict[str, str]:
    """The 0510: 00 in balance, 95 not; the batch closed and the gateway's figures."""
    gateway = answer["gateway"]
    return {
        "t": answer_mti(fields["t"]),
        **_echo(fields, ("11", "41")),
        "39": "00" if answer["in_balance"] else OUT_OF_BALANCE,
        "60": f"{answer['batch_no']:06d}",
        "74": f"{gateway['refunds']['count']:010d}",
        "76": f"{gateway['purchases']['count']:010d}",
        "86": f"{gateway['refunds']['amount']:016d}",
        "88": f"{gateway['purchases']['amount']:016d}",
    }


def network_answer(fields: dict[str, str], open_batch: int | None) -> dict[str, str]:
    """The 0810; a sign-on's carries the open batch number in 60."""
    out = {"t": answer_mti(fields["t"]), **_echo(fields, ("11", "41", "70")), "39": "00"}
    if open_batch is not None:
        out["60"] = f"{open_batch:06d}"
    return out
