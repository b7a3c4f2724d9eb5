"""Latency percentiles, computed one way wherever a figure is quoted."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], fraction: float) -> float:
    """Nearest-rank percentile (0.0 when there are no values): the smallest value with at least
    `fraction` of the values at or below it, so p99 of 100 values is the 99th smallest."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be between 0 and 1")
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
