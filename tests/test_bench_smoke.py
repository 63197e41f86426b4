"""The benchmark's pure helpers, with known inputs: no servers, no database."""

from __future__ import annotations

import pytest

import bench
from bench.stats import median, percentile, rate, ratio, summarize


def test_bench_is_a_package() -> None:
    assert bench.__name__ == "bench"


def test_percentiles_interpolate_between_closest_ranks() -> None:
    samples = list(range(1, 101))  # 1..100
    assert percentile(samples, 0) == 1
    assert percentile(samples, 100) == 100
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 95) == pytest.approx(95.05)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    assert percentile([7.0], 99) == 7.0
    assert median([1.0, 2.0, 3.0, 10.0]) == pytest.approx(2.5)


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_of_known_latencies() -> None:
    figures = summarize([10.0] * 98 + [100.0, 200.0])
    assert figures["n"] == 100
    assert figures["p50_ms"] == 10.0
    assert figures["p95_ms"] == 10.0
    assert figures["p99_ms"] == pytest.approx(101.0)
    assert figures["max_ms"] == 200.0
    assert figures["mean_ms"] == pytest.approx(12.8)
    assert summarize([]) == {"n": 0}


def test_ratio_and_rate() -> None:
    assert ratio(30.0, 20.0) == 1.5
    assert ratio(1.0, 3.0) == 0.333
    assert ratio(None, 2.0) is None
    assert ratio(2.0, None) is None
    assert ratio(2.0, 0.0) is None
    assert rate(500, 10.0) == 50.0
    assert rate(1, 0.0) is None
