"""The benchmark's pure helpers, with known inputs: no servers, no database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def test_prerequisites_are_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from bench.__main__ import missing_prerequisites

    monkeypatch.setattr(shutil, "which", lambda name: None)
    missing = missing_prerequisites(["time_to_shield"], national_only=False)
    assert any("temporal" in m for m in missing)
    # The national run needs PostgreSQL only.
    assert not any("temporal" in m for m in missing_prerequisites([], national_only=True))


def test_figures_are_saved_after_each_phase(tmp_path: Path) -> None:
    from bench.__main__ import _parse, _save

    target = tmp_path / "figures.json"
    args = _parse(["--national", "--rows", "2000", "--json", str(target)])
    results: dict[str, Any] = {"national": {"load": {"rows": 2000}}}
    _save(args, results)
    assert json.loads(target.read_text())["national"]["load"]["rows"] == 2000
    results["national"]["recall"] = {"top50": 1.0}
    _save(args, results)
    assert json.loads(target.read_text())["national"]["recall"] == {"top50": 1.0}


def test_rows_goes_with_national() -> None:
    from bench.__main__ import _parse

    with pytest.raises(SystemExit):
        _parse(["--rows", "2000"])
    assert _parse(["--national"]).rows is None


def test_the_national_generator_and_its_misspellings() -> None:
    from bench import national

    rows = list(national.national_rows(0, 4_000))
    assert len({r[0] for r in rows}) == 4_000
    assert sum(1 for r in rows if r[-1] is not None) == 20  # 0.5% shielded
    # Siblings share an address (households of one to four).
    addresses = [r[6] for r in rows]
    assert len(set(addresses)) < len(addresses)
    assert any("-" in r[2] for r in rows)  # double-barrelled family names
    labelled = national.misspellings(4_000, 120)
    assert {item["kind"] for item in labelled} == {
        "transliteration",
        "family_variant",
        "double_barrelled_part",
        "slip_given",
        "slip_family",
        "alias",
    }
    by_uid = {r[0]: r for r in rows}
    for item in labelled:
        given, family = by_uid[item["uid"]][1:3]
        assert (item["given"], item["family"]) != (given, family) or item["kind"] == "alias"
