"""A deadline on every terminal request: the terminal hears within it, whatever the
database does.

The work runs as a task of its own and the caller waits for it at most `seconds`. Past
that the caller gets DeadlineExceeded (answered 91: outcome unknown, the terminal
reverses or retransmits) while the task is cancelled behind the answer. Cancelling in
place (asyncio.timeout around the awaits) would not do: the cancelled code still awaits
its rollback and the pool's connection release, and on a silent database those hang as
long as the query did.

Nothing is half-written by the cancel: every decision is one statement or one
transaction, so it is either rolled back or committed whole, and a committed one is what
the retransmission of the same request finds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger("pos_gateway.deadline")


class DeadlineExceeded(TimeoutError):
    """The request's deadline passed; its outcome is unknown to the terminal (91)."""


async def within_deadline(work: Coroutine[Any, Any, T], seconds: float) -> T:
    """Await `work`, but for at most `seconds`; then raise DeadlineExceeded."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(_log_late_outcome)
    raise DeadlineExceeded(f"no answer within {seconds} s")


def _log_late_outcome(task: asyncio.Task) -> None:
    """Collect the abandoned task's outcome (asyncio would warn that it was never read)."""
    if not task.cancelled() and task.exception() is not None:
        log.info("late_request_failed", error=type(task.exception()).__name__)
