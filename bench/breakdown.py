"""python -m bench.breakdown [--n N] [--profile-n M]: where one intake's time goes, and what would cut it.

A small stack of its own (PostgreSQL with a small directory, one tuned dev server, worker processes), then:
1. N sequential intakes of each kind, interleaved one by one: ours; the floor (one activity); the floor with
   a local activity; and, as an experiment, ours on a worker whose sandbox passes the `workflows` package
   through instead of re-importing it for every new workflow. Per-hop medians come from the server's history
   event times (same clock as the client).
2. M more of ours through a worker process under cProfile (workflow-task threads and the event-loop thread
   profiled separately), and the functions that dominate each. cProfile inflates times: read shares.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import directory
from bench.intake import (
    KIND_FLOOR,
    KIND_FLOOR_LOCAL,
    KIND_OURS,
    SEGMENTS,
    Rig,
    Sample,
    _segments,
    hop_medians,
    run_batch,
    shape,
)
from bench.stack import Stack, configure_client_logging
from bench.stats import summarize

QUEUE = "bench-shield"
PASSTHROUGH_QUEUE = "bench-shield-passthrough"
FLOOR_QUEUE = "bench-floor"
PROFILE_QUEUE = "bench-profile"
# Experiments on the worker only (no product change): each runs our workflow on its own worker process.
VARIANTS: dict[str, dict[str, Any]] = {
    # As this dev environment runs it (PYTHONDONTWRITEBYTECODE=1, editable install): no cached bytecode.
    "ours_no_pyc": {"bytecode_cache": False},
    # The workflows package passed through the sandbox: no re-import (and pydantic rebuild) per workflow.
    "ours_passthrough": {"passthrough_workflows": True},
}


def _relabelled(rig: Rig, kind: str) -> Callable[[], Awaitable[Sample]]:
    async def call() -> Sample:
        sample = await rig.call(KIND_OURS)()
        sample.kind = kind
        return sample

    return call


async def _hops(client: Any, samples: list[Sample]) -> dict[str, Any]:
    rows, shapes = [], set()
    for sample in samples:
        events = list((await client.get_workflow_handle(sample.workflow_id).fetch_history()).events)
        segments = _segments(sample, events)
        if segments:
            segments["total"] = sample.latency_ms
            rows.append(segments)
            shapes.add(shape(events))
    return {**hop_medians(rows), "shape": ", ".join(sorted(shapes))} if rows else {}


def _top(path: Path, sort: str, limit: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    text = out.getvalue()
    return text[text.find("   ncalls") :] if "   ncalls" in text else text


async def run(n: int, profile_n: int) -> None:
    from temporalio.client import Client

    from shielding import store
    from shielding.action_auth import generate_action_key_spec
    from shielding.codec import generate_key_spec
    from shielding.settings import Settings
    from shielding.temporal import data_converter
    from starter import ShieldingService

    stack = Stack()
    try:
        keys = generate_key_spec("bench")
        action_keys = generate_action_key_spec("bench")
        configure_client_logging(stack.root / "bench-client.log")
        tuned = stack.start_temporal("temporal-tuned", tuned=True)
        url = stack.start_postgres()
        store.migrate(url)
        rows = 50_000
        await directory.load_children(url, rows)
        children = (directory.child_uid(i) for i in range(1, rows) if not directory.is_shielded(i))
        settings = Settings(DATABASE_URL=url, encryption_keys=keys, action_keys=action_keys)  # type: ignore[call-arg]
        pool = await store.create_pool(url, max_size=10)
        await stack.wait_temporal(tuned)
        client = await Client.connect(tuned.address, data_converter=data_converter(settings))
        worker = await stack.start_worker(
            "worker-main",
            tuned,
            encryption_keys=keys,
            action_keys=action_keys,
            task_queue=QUEUE,
            floor_task_queue=FLOOR_QUEUE,
        )
        rig = Rig(
            service=ShieldingService(client, pool, task_queue=QUEUE, max_document_bytes=1024, action_keys=action_keys),
            client=client,
            floor_task_queue=FLOOR_QUEUE,
            children=children,
        )
        calls: dict[str, Callable[[], Awaitable[Sample]]] = {
            KIND_OURS: rig.call(KIND_OURS),
            KIND_FLOOR: rig.call(KIND_FLOOR),
            KIND_FLOOR_LOCAL: rig.call(KIND_FLOOR_LOCAL),
        }
        workers = [worker]
        for kind, options in VARIANTS.items():
            queue = f"bench-{kind}".replace("_", "-")
            workers.append(
                await stack.start_worker(
                    f"worker-{queue}", tuned, encryption_keys=keys, action_keys=action_keys, task_queue=queue, **options
                )
            )
            calls[kind] = _relabelled(
                Rig(
                    service=ShieldingService(
                        client, pool, task_queue=queue, max_document_bytes=1024, action_keys=action_keys
                    ),
                    client=client,
                    floor_task_queue=FLOOR_QUEUE,
                    children=children,
                ),
                kind,
            )
        for call in calls.values():  # warm-up: sandbox imports, channels
            await run_batch(call, 10, 1)
        samples: dict[str, list[Sample]] = {kind: [] for kind in calls}
        for i in range(n):
            for kind in list(calls) if i % 2 == 0 else list(calls)[::-1]:
                samples[kind].append(await calls[kind]())
        print(f"sequential intakes, {n} of each kind interleaved one by one (ms):")
        for kind, got in samples.items():
            s = summarize([x.latency_ms for x in got])
            print(f"  {kind:18} p50 {s['p50_ms']:6.1f}  p95 {s['p95_ms']:6.1f}  p99 {s['p99_ms']:6.1f}")
        print("\nmedian per hop (ms), from history event times:")
        hops = {kind: await _hops(client, got) for kind, got in samples.items()}
        keys_seen = [key for key, _ in SEGMENTS if any(key in h for h in hops.values())] + ["total", "shape"]
        print("  " + "segment".ljust(22) + "".join(kind.rjust(19) for kind in hops))
        for key in keys_seen:
            print("  " + key.ljust(22) + "".join(str(h.get(key, "-")).rjust(19) for h in hops.values()))
        print("\n" + "\n".join(f"  {key}: {text}" for key, text in SEGMENTS))
        for managed in workers:
            stack.stop(managed)

        profile_dir = stack.root / "profile"
        profile_dir.mkdir()
        profiled = await stack.start_worker(
            "worker-profiled",
            tuned,
            encryption_keys=keys,
            action_keys=action_keys,
            task_queue=PROFILE_QUEUE,
            profile_dir=profile_dir,
        )
        rig.service = ShieldingService(
            client, pool, task_queue=PROFILE_QUEUE, max_document_bytes=1024, action_keys=action_keys
        )
        got, wall = await run_batch(rig.call(KIND_OURS), profile_n, 1)
        print(f"\n{profile_n} sequential intakes through a profiled worker: {wall:.1f} s")
        stack.stop(profiled, grace=30)
        for name in ("workflow-threads", "event-loop-thread"):
            path = profile_dir / f"{name}.pstats"
            if not path.exists():
                print(f"(no {name} profile)")
                continue
            print(f"\n=== worker {name}: top by cumulative time ===")
            print(_top(path, "cumulative", 40))
            print(f"=== worker {name}: top by own time ===")
            print(_top(path, "tottime", 25))
            if os.environ.get("BENCH_KEEP_TEMP"):
                print(f"(profile kept: {path})")
        await pool.close()
    finally:
        stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="sequential intakes of each kind")
    parser.add_argument("--profile-n", type=int, default=200, help="intakes through the profiled worker")
    args = parser.parse_args()
    code = 0
    t0 = time.monotonic()
    try:
        asyncio.run(run(args.n, args.profile_n))
    except KeyboardInterrupt:
        code = 130
    print(f"\n({time.monotonic() - t0:.0f} s)")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
