"""The printed table: every figure beside its floor, the ratio and the goal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _num(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}{unit}"
    return str(value)


def _verdict(value: Any, goal: str) -> str:
    if value is None or not goal:
        return ""
    op, _, limit = goal.partition(" ")
    bound = float(limit)
    ok = value <= bound if op == "<=" else value >= bound
    return "ok" if ok else "MISSED"


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    machine, versions = results.get("machine", {}), results.get("versions", {})
    lines.append(
        f"shielding benchmark ({results.get('mode', '?')}), {machine.get('cores')} cores, "
        f"{machine.get('memory_gb')} GB, load {machine.get('load_before')} -> {machine.get('load_after')}; "
        f"Python {versions.get('python')}, temporalio {versions.get('temporalio')}, "
        f"temporal CLI {versions.get('temporal_cli')}, PostgreSQL {versions.get('postgres')}; "
        f"{results.get('wall_s', '?')} s"
    )
    widths = [44, 15, 15, 8, 9, 7]
    lines.append("")
    lines.append(_row(["figure", "ours", "floor", "ratio", "goal", ""], widths))
    lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))

    def add(name: str, ours: str, floor: str, value: Any, goal: str = "") -> None:
        lines.append(_row([name, ours, floor, _num(value, digits=3), goal, _verdict(value, goal)], widths))

    tts = results.get("time_to_shield")
    if tts:
        add(
            "time_to_shield p99 vs LOCAL-activity floor",
            _num(tts["p99_ms"], " ms"),
            _num(tts.get("floor_local_p99_ms"), " ms"),
            tts.get("ratio_p99_local_floor"),
            "<= 1.5",
        )
        add(
            "  p50 vs local-activity floor p50",
            _num(tts["p50_ms"], " ms"),
            _num(tts.get("floor_local_p50_ms"), " ms"),
            tts.get("ratio_p50_local_floor"),
        )
        add(
            "  p99 vs regular-activity floor, 1 in flight",
            _num(tts["p99_ms"], " ms"),
            _num(tts["floor_p99_ms"], " ms"),
            tts["ratio_p99"],
        )
        add(
            "time_to_shield p50 vs UNTUNED floor p50",
            _num(tts["p50_ms"], " ms"),
            _num(tts["untuned_floor_p50_ms"], " ms"),
            tts["ratio_p50_untuned"],
            "<= 0.3",
        )
        for conc, entry in tts["by_concurrency"].items():
            ours, floor = entry["ours"], entry["floor"]
            add(
                f"  c={conc}: p50 / p95 / p99 (n={ours['n']})",
                f"{ours['p50_ms']:.0f}/{ours['p95_ms']:.0f}/{ours['p99_ms']:.0f}",
                f"{floor['p50_ms']:.0f}/{floor['p95_ms']:.0f}/{floor['p99_ms']:.0f}",
                entry["ratio_p99"],
            )
    thr = results.get("intake_throughput")
    if thr:
        add(
            f"intake_throughput ({thr['requests']} req, {thr['concurrency']} in flight, "
            f"{thr.get('workers', 1)} worker{'s' if thr.get('workers', 1) > 1 else ''})",
            _num(thr["per_s"], "/s"),
            _num(thr["floor_per_s"], "/s"),
            thr["ratio"],
            ">= 0.8",
        )
        cpu = thr.get("cpu_ms_per_request", {})
        if cpu.get("ours") and cpu.get("floor"):
            for name in cpu["ours"]:
                add(
                    f"  CPU per request: {name}",
                    _num(cpu["ours"][name], " ms", 2),
                    _num(cpu["floor"].get(name), " ms", 2),
                    None,
                )
    dr = results.get("directory_read")
    if dr:
        rows = dr.get("load", {}).get("rows")
        add(
            f"directory_read view by uid p99 ({_num(rows, '', 0)} rows)",
            _num(dr["view_p99_ms"], " ms", 3),
            _num(dr["raw_p99_ms"], " ms", 3),
            dr["ratio"],
            "<= 1.05",
        )
        add("  view by uid p50", _num(dr["view_p50_ms"], " ms", 3), _num(dr["raw_p50_ms"], " ms", 3), dr["ratio_p50"])
        add(
            "  view by uid throughput (pool of 10)",
            _num(dr["view_per_s"], "/s", 0),
            _num(dr["raw_per_s"], "/s", 0),
            None,
        )
        add(
            "  search_children name+dob p99",
            _num(dr["search_p99_ms"], " ms", 2),
            _num(dr["raw_search_p99_ms"], " ms", 2),
            dr["search_ratio"],
        )
        add(
            "  search_children name+dob p50",
            _num(dr["search_p50_ms"], " ms", 2),
            _num(dr["raw_search_p50_ms"], " ms", 2),
            None,
        )
        add(
            "  search_children throughput",
            _num(dr["search_per_s"], "/s", 0),
            _num(dr["raw_search_per_s"], "/s", 0),
            None,
        )
    _national(results.get("national"), add)
    ol = results.get("open_lifecycles")
    if ol:
        add(
            f"open_lifecycles: {ol['count']} started (cache {ol['max_cached_workflows']})",
            _num(ol["start_s"], " s"),
            "",
            None,
        )
        for point in ol["checkpoints"]:
            add(
                f"  {point['percent']:>3}%: {point['started']} started, {point['running']} running",
                _num(point["worker_rss_mb"], " MB"),
                _num(point["server_rss_mb"], " MB"),
                None,
                "worker/server",
            )
        add(
            "  worker RSS growth 25% -> 100%",
            _num(ol["worker_rss_growth_25_to_100_mb"], " MB"),
            "",
            None,
            "flat" if ol["worker_memory_flat"] else "NOT FLAT",
        )
    sim = results.get("simulated_lifecycle")
    if sim:
        add(
            f"simulated_lifecycle: {sim['simulated_days']:.0f} days, {sim['reviews_approved']} reviews",
            _num(sim["wall_s"], " s", 2),
            "",
            None,
        )
    bd = results.get("time_to_shield", {}).get("breakdown")
    kinds = [kind for kind in ("ours", "floor", "floor_local") if bd and kind in bd]
    if bd and kinds:
        widths = [26] + [15] * len(kinds)
        lines.append("")
        lines.append("where a sequential intake's time goes (medians, ms, from the server's history event times):")
        lines.append(_row(["segment", *kinds], widths))
        for key in [*bd["segments"], "total", "shape"]:
            cells = [bd[kind].get(key) for kind in kinds]
            if all(c is None for c in cells):
                continue
            lines.append(_row([key, *(_num(c) for c in cells)], widths))
        shield = results.get("time_to_shield", {}).get("shield_transaction")
        if shield:
            lines.append(
                f"  (the shield transaction alone, store.shield_request from the bench process: "
                f"p50 {shield['p50_ms']:.1f} ms, p99 {shield['p99_ms']:.1f} ms)"
            )
    return "\n".join(lines)


def _national(nat: dict[str, Any] | None, add: Callable[..., None]) -> None:
    """The national directory's rows: load, size, reads beside their floors, the fuzzy search's recall."""
    if not nat:
        return
    load = nat.get("load", {})
    add(
        f"national: {_num(load.get('rows'), '', 0)} children loaded (COPY)",
        _num(load.get("copy_s"), " s"),
        "",
        None,
    )
    add("  database size", _num(load.get("database_mb"), " MB", 0), "", None)
    uid = nat.get("view_by_uid")
    if uid:
        last = uid["repeats"][-1] if uid.get("repeats") else {}
        add(
            f"  view by uid p99 ratio, median of {len(uid.get('repeats', []))} "
            f"[{_num(uid.get('ratio_p99_min'), '', 2)}..{_num(uid.get('ratio_p99_max'), '', 2)}]",
            _num(last.get("view_p99_ms"), " ms", 3),
            _num(last.get("raw_p99_ms"), " ms", 3),
            uid.get("ratio_p99_median"),
            "<= 1.05",
        )
    for key, lanes in (("search", "10 clients"), ("search_one_client", "1 client")):
        _national_searches(nat, key, lanes, add)
    rec = nat.get("recall")
    if rec:
        add(
            f"  fuzzy recall in first 50 ({rec['queries']} misspellings)",
            _num(rec["top50"], "", 3),
            "",
            rec["top50"],
            ">= 0.99",
        )
        add("  fuzzy recall at rank 1", _num(rec["rank1"], "", 3), "", None)
        for kind, entry in rec.get("by_kind", {}).items():
            add(
                f"    {kind} (n={entry['n']}): top 50 / rank 1",
                f"{entry['top50']:.3f}/{entry['rank1']:.3f}",
                "",
                None,
            )


def _national_searches(nat: dict[str, Any], key: str, lanes: str, add: Callable[..., None]) -> None:
    searches = nat.get(key, {})
    for name, label in (
        ("exact", "exact name + DOB"),
        ("fuzzy", "fuzzy name + DOB"),
        ("fuzzy_3_days", "fuzzy name + DOB +/-3 days"),
        ("name_only", "name only (exact names, no DOB)"),
    ):
        entry = searches.get(name)
        if entry:
            floor = searches.get("raw_exact", {}) if name == "exact" else {}
            over = entry.get("p99_ms") / floor["p99_ms"] if floor.get("p99_ms") else None
            add(
                f"  {label} p50 / p99, {lanes}",
                f"{_num(entry.get('p50_ms'), '', 2)}/{_num(entry.get('p99_ms'), ' ms', 2)}",
                f"{_num(floor.get('p50_ms'), '', 2)}/{_num(floor.get('p99_ms'), ' ms', 2)}" if floor else "",
                over,
            )
