"""Figures of a load run: what is counted while it runs, the final report, the display.

Latencies are recorded in microseconds in HDR histograms, so p99.9 and max stay exact
to three significant figures whatever the spread.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from terminal_sim.protocol import format_amount

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: far beyond any client timeout
SIGNIFICANT_FIGURES = 3
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def record_us(histogram: HdrHistogram, seconds: float) -> None:
    """Record a latency in whole microseconds, clamped into the histogram's range."""
    histogram.record_value(min(max(round(seconds * 1_000_000), LOWEST_US), HIGHEST_US))


def latency_summary(histogram: HdrHistogram) -> dict[str, int | float]:
    """p50/p90/p99/p99.9/max (µs) and the count; zeros for an empty histogram."""
    summary: dict[str, int | float] = {
        name: histogram.get_value_at_percentile(p) for name, p in PERCENTILES
    }
    summary["max"] = histogram.get_max_value()
    summary["mean"] = round(histogram.get_mean_value(), 1)
    summary["count"] = histogram.get_total_count()
    return summary


class LoadStats:
    """Everything counted during a run; one event loop writes it, so no locks."""

    def __init__(self) -> None:
        # From the intended send time (open model: the schedule), so a queue in front
        # of the gateway shows in the figures instead of silently slowing the sender.
        self.latency = new_histogram()
        # From the moment the request actually left: the difference is client lag.
        self.service_time = new_histogram()
        self.sent = 0
        self.answered = 0
        self.response_codes: Counter[str] = Counter()
        self.by_type: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.errors: Counter[str] = Counter()
        self.approved_purchases = 0
        self.approved_amount = 0
        self.reversals = 0
        self.reversal_attempts = 0
        self.reversal_codes: Counter[str] = Counter()
        self.reversal_errors: Counter[str] = Counter()
        self.stan_collisions = 0  # 94 from STANs an earlier run used today; resent
        # Per second of the run (from `started`): answers and their latencies, for charts.
        self.started: float | None = None
        self.per_second: defaultdict[int, list[int]] = defaultdict(list)

    def request_sent(self, txn_type: str) -> None:
        self.sent += 1
        self.by_type[txn_type]["sent"] += 1

    def answer(
        self,
        txn_type: str,
        *,
        intended: float,
        sent_at: float,
        done: float,
        status: int,
        body: dict[str, Any],
        amount: int | None,
    ) -> None:
        """An HTTP answer (perf_counter seconds); only a 200 with a response code counts
        as answered, and only answered requests go into the latency histograms: anything
        else is an error of its kind."""
        code = body.get("response_code")
        if status != 200:
            self.error(txn_type, f"http_{status}")
            return
        if not isinstance(code, str):
            self.error(txn_type, "bad_answer")
            return
        self.answered += 1
        record_us(self.latency, done - intended)
        if self.started is not None:
            self.per_second[int(done - self.started)].append(int((done - intended) * 1e6))
        record_us(self.service_time, done - sent_at)
        self.response_codes[code] += 1
        self.by_type[txn_type][code] += 1
        if txn_type.startswith("purchase") and code == "00":
            self.approved_purchases += 1
            answered_amount = body.get("amount")
            self.approved_amount += (
                answered_amount if isinstance(answered_amount, int) else (amount or 0)
            )

    def error(self, txn_type: str, kind: str) -> None:
        self.errors[kind] += 1
        self.by_type[txn_type][f"error:{kind}"] += 1


def build_report(stats: LoadStats, *, settings: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """The final figures, as written by `load --json` and shown as a table."""
    elapsed = max(elapsed_s, 1e-9)
    return {
        **settings,
        "elapsed_s": round(elapsed_s, 3),
        "sent": stats.sent,
        "answered": stats.answered,
        "throughput_per_s": round(stats.answered / elapsed, 1),
        "sent_per_s": round(stats.sent / elapsed, 1),
        "latency_us": latency_summary(stats.latency),
        "service_time_us": latency_summary(stats.service_time),
        "response_codes": dict(sorted(stats.response_codes.items())),
        "by_type": {t: dict(sorted(c.items())) for t, c in sorted(stats.by_type.items())},
        "approved_per_s_by_type": {
            t: round(c["00"] / elapsed, 1) for t, c in sorted(stats.by_type.items()) if c["00"]
        },
        "errors": dict(sorted(stats.errors.items())),
        "errors_total": sum(stats.errors.values()),
        "stan_collisions": stats.stan_collisions,
        "approved_purchases": {
            "count": stats.approved_purchases,
            "amount_fen": stats.approved_amount,
        },
        "timeline": timeline(stats),
        "reversals": {
            "sent": stats.reversals,
            "attempts": stats.reversal_attempts,
            "response_codes": dict(sorted(stats.reversal_codes.items())),
            "errors": dict(sorted(stats.reversal_errors.items())),
        },
    }


def timeline(stats: LoadStats) -> list[dict[str, int]]:
    """Answers per second of the run, with that second's p50 and p99 latency."""
    out = []
    for second in sorted(stats.per_second):
        values = sorted(stats.per_second[second])
        out.append(
            {
                "second": second,
                "answered": len(values),
                "p50_us": values[len(values) // 2],
                "p99_us": values[min(len(values) - 1, int(len(values) * 0.99))],
            }
        )
    return out


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{key}: {n}" for key, n in counts.items()) or "none"


def render_report(report: dict[str, Any]) -> Table:
    model = report["model"]
    target = f", target {report['rate']:g}/s" if report.get("rate") else ""
    table = Table(
        title=f"Load: {report['terminals']} terminals, {model} model{target}",
        show_header=False,
        title_justify="left",
    )
    table.add_column("figure", style="bold")
    table.add_column("value")
    table.add_row("elapsed", f"{report['elapsed_s']:.2f} s")
    table.add_row("sent / answered", f"{report['sent']} / {report['answered']}")
    table.add_row(
        "throughput",
        f"{report['throughput_per_s']:.1f} answers/s (sent {report['sent_per_s']:.1f}/s)",
    )
    latency = report["latency_us"]
    for name, label in (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9")):
        table.add_row(f"latency {label}", _ms(latency[name]))
    table.add_row("latency max", _ms(latency["max"]))
    if model == "open":
        table.add_row("service time p99", _ms(report["service_time_us"]["p99"]))
    table.add_row("response codes", _counts(report["response_codes"]))
    approved = report["approved_purchases"]
    table.add_row(
        "approved purchases",
        f"{approved['count']} for {format_amount(approved['amount_fen'])} CNY",
    )
    table.add_row("errors", _counts(report["errors"]))
    reversals = report["reversals"]
    if reversals["sent"]:
        table.add_row(
            "reversals",
            f"{reversals['sent']} sent: {_counts(reversals['response_codes'])}"
            + (f"; unanswered {_counts(reversals['errors'])}" if reversals["errors"] else ""),
        )
    return table


class Progress:
    """One live line: elapsed, sent, answered, current rate, p99 so far.

    Shown only on a terminal: piped or captured output gets the final report alone."""

    def __init__(self, stats: LoadStats, duration_s: float, console: Console | None = None) -> None:
        self._stats = stats
        self._duration = duration_s
        self._console = console or Console()
        self._live: Live | None = None
        self._started = 0.0
        self._last_time = 0.0
        self._last_answered = 0

    def line(self, now: float) -> Text:
        stats = self._stats
        interval = now - self._last_time
        rate = (stats.answered - self._last_answered) / interval if interval > 0 else 0.0
        self._last_time, self._last_answered = now, stats.answered
        p99 = stats.latency.get_value_at_percentile(99.0)
        elapsed = now - self._started
        phase = "" if elapsed <= self._duration else "  (waiting for the last answers)"
        return Text(
            f"{elapsed:5.1f}/{self._duration:g} s  sent {stats.sent}  answered {stats.answered}"
            f"  {rate:.1f}/s  p99 {p99 / 1000:.1f} ms  errors {sum(stats.errors.values())}"
            f"{phase}",
            no_wrap=True,
            overflow="ellipsis",
        )

    def start(self) -> None:
        self._started = self._last_time = time.perf_counter()
        self._live = Live(
            Text("starting…"),
            console=self._console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
            transient=False,
        )
        self._live.start()

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.line(time.perf_counter()), refresh=True)

    def stop(self) -> None:
        if self._live is not None:
            self.refresh()
            self._live.stop()
            self._live = None
