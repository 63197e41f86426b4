"""Pure statistics helpers (no I/O), so they can be tested without any server."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0..100")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(ordered[lower])
    weight = position - lower
    return float(ordered[lower] * (1 - weight) + ordered[upper] * weight)


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, mean and max of latencies in milliseconds (rounded for reports)."""
    if not samples_ms:
        return {"n": 0}
    return {
        "n": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 50), 3),
        "p95_ms": round(percentile(samples_ms, 95), 3),
        "p99_ms": round(percentile(samples_ms, 99), 3),
        "mean_ms": round(sum(samples_ms) / len(samples_ms), 3),
        "max_ms": round(max(samples_ms), 3),
    }


def ratio(ours: float | None, floor: float | None, digits: int = 3) -> float | None:
    """ours / floor, or None when either is missing or the floor is zero."""
    if ours is None or floor is None or floor == 0:
        return None
    return round(ours / floor, digits)


def rate(count: int, seconds: float, digits: int = 1) -> float | None:
    """Events per second, or None for an empty interval."""
    if seconds <= 0:
        return None
    return round(count / seconds, digits)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)
