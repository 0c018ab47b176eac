"""How amounts and times are shown to people (DESIGN §11): CNY with the yuan sign and
thousands separators on pages, yuan with two decimals in CSVs, times in the scheme's
time zone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SCHEME_TZ = ZoneInfo("Asia/Shanghai")


def format_yuan(fen: int) -> str:
    """123450 -> '1234.50' (CSV cells: no separators, so spreadsheets read a number)."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def format_cny(fen: int) -> str:
    """123450 -> '¥1,234.50'; -1250 -> '-¥12.50'."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{part:02d}"


def local_time(moment: datetime) -> datetime:
    return moment.astimezone(SCHEME_TZ)


def format_time(moment: datetime) -> str:
    """'2026-12-01 12:30:05' in Asia/Shanghai."""
    return f"{local_time(moment):%Y-%m-%d %H:%M:%S}"


def format_iso_time(text: str) -> str:
    """An ISO 8601 time with an offset (as the JSON API writes them) in Asia/Shanghai."""
    return format_time(datetime.fromisoformat(text))


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[start of `first`, start of the day after `last`) in Asia/Shanghai."""
    start = datetime.combine(first, time(), SCHEME_TZ)
    end = datetime.combine(last + timedelta(days=1), time(), SCHEME_TZ)
    return start, end


def month_period(day: date) -> tuple[date, date]:
    """The calendar month around `day`: its first and last days."""
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def parse_yuan(text: str) -> int | None:
    """'12.5' / '12.50' / '1,234' -> fen; None when it is not a non-negative amount with at
    most two decimals (no floats: the digits are read as they are)."""
    text = text.strip().replace(",", "").removeprefix("¥")
    whole, dot, part = text.partition(".")
    if not whole.isascii() or not whole.isdigit() or len(whole) > 11:
        return None
    if dot and (not part.isascii() or not part.isdigit() or not 1 <= len(part) <= 2):
        return None
    return int(whole) * 100 + int(part.ljust(2, "0") if dot else 0)


def business_today() -> date:
    """Today in the scheme's time zone."""
    return datetime.now(SCHEME_TZ).date()
