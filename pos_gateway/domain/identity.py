"""What makes two terminal requests the same request (DESIGN §4 idempotency, §9 "one
request, two transports").

(terminal, STAN, local date) is the key; under one key, a request whose identity equals
the stored one is a retransmission (the stored answer), any other is a duplicate (94).
The identity is taken from the business fields only - type, PAN, amount, original
references - never from the time of day, the PIN block (format 4 pads at random, so a
re-enciphered PIN is the same request) or how a transport spells the currency, so a
purchase sent by ISO 8583 and retransmitted as JSON is one purchase.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

# The encoding is reproduced in SQL by schema/004_request_identity.sql (concat_ws skips
# the NULLs, as the absent fields are skipped here): change both or neither. A field
# added later (items, ...) is appended only when present, so the identity of a request
# without it stays what it was.
_SEPARATOR = "\x1f"
_TAG = "pos-request-identity"


def request_identity(
    *,
    txn_type: str,
    pan: str | None,
    amount: int | None,
    original_rrn: str | None = None,
    original_stan: str | None = None,
    items: Sequence[tuple[str, int, int]] | None = None,
    account_max: int | None = None,
) -> bytes:
    """SHA-256 of the request's business fields (32 bytes).

    A reversal is identified by what it reverses: the PAN and amount it may carry are
    claims the gateway does not act on (it reverses what it recorded), and the original's
    date is a search hint one transport always sends and the other may leave out.

    An itemised purchase or settlement trial (DESIGN §10) is also its lines, in the order
    sent, and its account_max: the same total with other lines is another request."""
    if txn_type == "reversal":
        pan, amount = None, None
    fields = (
        ("type", txn_type),
        ("pan", pan),
        ("amount", None if amount is None else str(amount)),
        ("original_rrn", original_rrn),
        ("original_stan", original_stan),
        # Appended after the fields schema/004 recomputes, and only when present.
        (
            "items",
            None
            if items is None
            else ",".join(f"{code}*{quantity}*{price}" for code, quantity, price in items),
        ),
        ("account_max", None if account_max is None else str(account_max)),
    )
    text = _SEPARATOR.join(
        [_TAG, *(f"{name}={value}" for name, value in fields if value is not None)]
    )
    return hashlib.sha256(text.encode()).digest()
