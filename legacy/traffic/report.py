"""The human-readable summary of a traffic run: one table row per route."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from legacy.traffic.stats import TrafficSummary


def summary_table(summary: TrafficSummary, *, width: int = 120) -> str:
    table = Table(title=None, show_lines=False)
    for name, justify in (
        ("route", "left"),
        ("role", "left"),
        ("requests", "right"),
        ("errors", "right"),
        ("statuses", "left"),
        ("p50 ms", "right"),
        ("p90 ms", "right"),
        ("p99 ms", "right"),
        ("max ms", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for route in sorted(summary.routes):
        figures = summary.routes[route].figures()
        table.add_row(
            route,
            figures["role"],
            str(figures["count"]),
            str(figures["errors"]) if not figures["errors"] else f"[red]{figures['errors']}[/red]",
            " ".join(f"{status}:{count}" for status, count in figures["statuses"].items()),
            f"{figures['p50_ms']:.1f}",
            f"{figures['p90_ms']:.1f}",
            f"{figures['p99_ms']:.1f}",
            f"{figures['max_ms']:.1f}",
        )
    totals = summary.as_dict()
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, no_color=True)
    console.print(table)
    console.print(
        f"{totals['requests']} requests in {totals['duration_s']} s ({totals['achieved_rate']} req/s, "
        f"target {'closed loop' if summary.mode == 'closed' else totals['target_rate']}), "
        f"{totals['errors']} errors, p50 {totals['p50_ms']} ms, p99 {totals['p99_ms']} ms, "
        f"generator lag max {totals['max_dispatch_lag_ms']} ms, "
        f"generator CPU {totals['generator_cpu_us_per_request']} us/request"
    )
    for route, kind, detail in summary.samples[:5]:
        console.print(f"error sample: {route} {kind}: {detail}", markup=False)
    return buffer.getvalue().rstrip("\n")
