"""One error taxonomy. Business declines are answers with a response code, not
exceptions; these are the refusals of a use case, named by what went wrong, each with a
stable `code`. They carry no HTTP status: http/errors.py maps kinds and codes to statuses
in one table at the edge, so services (and the ISO 8583 front end) stay transport-free."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal with a stable, machine-readable code and a message for people."""

    code = "refused"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    """The input is malformed or breaks a rule of its shape (a bad ID number, a month in
    the future, a weak PIN)."""

    code = "malformed_request"


class NotAuthenticated(DomainError):
    """Who is calling is not established: no or a wrong credential, an expired session."""

    code = "unauthorized"


class NotPermitted(DomainError):
    """The caller is known but may not do this now (a locked PIN, a first password)."""

    code = "forbidden"


class NoSuchRecord(DomainError):
    """What the request names does not exist (no card, no person, no employer)."""

    code = "not_found"


class ConflictsWithRecord(DomainError):
    """The request contradicts what is stored (a card replaced or not active, a batch
    already closed, an employment still open)."""

    code = "conflict"
