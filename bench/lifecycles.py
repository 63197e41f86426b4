"""open_lifecycles: many shielding lifecycles sleeping toward their reviews, and what they cost in memory.

A dedicated worker process (our worker, `max_cached_workflows` set low) on its own task queue; N intakes
through `ShieldingService.submit_request` in four equal steps; after each step (and before the first) the
resident memory of the worker process and of the dev server, and the number of running lifecycles the
server reports for that task queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from bench.intake import Rig, run_batch
from bench.stack import Managed, TemporalServer, tree_rss_mb
from bench.stats import rate, summarize

SETTLE_S = 1.5


async def _running(client: Client, task_queue: str) -> int | None:
    try:
        count = await client.count_workflows(f'TaskQueue = "{task_queue}" AND ExecutionStatus = "Running"')
    except Exception:  # noqa: BLE001 - visibility is eventually consistent and optional here
        return None
    return count.count


async def open_lifecycles(
    rig: Rig,
    *,
    worker: Managed,
    server: TemporalServer,
    task_queue: str,
    count: int,
    concurrency: int,
    max_cached_workflows: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    await asyncio.sleep(SETTLE_S)
    checkpoints: list[dict[str, Any]] = [
        {
            "percent": 0,
            "started": 0,
            "running": await _running(rig.client, task_queue),
            "worker_rss_mb": round(tree_rss_mb(worker.pid), 1),
            "server_rss_mb": round(tree_rss_mb(server.managed.pid), 1),
        }
    ]
    step = count // 4
    started = 0
    busy_s = 0.0
    latencies: list[float] = []
    for quarter in range(1, 5):
        size = count - started if quarter == 4 else step
        samples, wall = await run_batch(rig.call("ours"), size, concurrency)
        started += len(samples)
        busy_s += wall
        latencies += [s.latency_ms for s in samples]
        await asyncio.sleep(SETTLE_S)
        running = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # visibility lags the acknowledgements a little
            running = await _running(rig.client, task_queue)
            if running is None or running >= started:
                break
            await asyncio.sleep(0.5)
        checkpoints.append(
            {
                "percent": quarter * 25,
                "started": started,
                "running": running,
                "worker_rss_mb": round(tree_rss_mb(worker.pid), 1),
                "server_rss_mb": round(tree_rss_mb(server.managed.pid), 1),
            }
        )
        progress(
            f"open_lifecycles {quarter * 25}%: {started} started, worker {checkpoints[-1]['worker_rss_mb']} MB, "
            f"server {checkpoints[-1]['server_rss_mb']} MB"
        )
    first, quarter_in, last = checkpoints[0], checkpoints[1], checkpoints[-1]
    growth_after_cache = last["worker_rss_mb"] - quarter_in["worker_rss_mb"]
    later = last["started"] - quarter_in["started"]
    return {
        "count": started,
        "max_cached_workflows": max_cached_workflows,
        "concurrency": concurrency,
        "start_s": round(busy_s, 2),
        "started_per_s": rate(started, busy_s),
        "intake_latency": summarize(latencies),
        "checkpoints": checkpoints,
        "worker_rss_start_mb": first["worker_rss_mb"],
        "worker_rss_end_mb": last["worker_rss_mb"],
        "worker_rss_growth_25_to_100_mb": round(growth_after_cache, 1),
        "worker_kb_per_lifecycle_25_to_100": round(growth_after_cache * 1000 / later, 2) if later else None,
        "server_rss_growth_mb": round(last["server_rss_mb"] - first["server_rss_mb"], 1),
        "server_kb_per_lifecycle": round((last["server_rss_mb"] - first["server_rss_mb"]) * 1000 / started, 1)
        if started
        else None,
        # Flat: less than 10% growth between 25% and 100% of the lifecycles (the cache is full well before 25%).
        "worker_memory_flat": growth_after_cache < 0.10 * quarter_in["worker_rss_mb"],
    }
